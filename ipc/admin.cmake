# Admin face: the CURVE admin server with its ZAP handler, the audit log and
# the "Suspicious connector activity" alerts (static library crp_admin), and
# the `connrep` CLI. Included from ipc/CMakeLists.txt.

if(NOT TARGET PkgConfig::ZMQ)
  pkg_check_modules(ZMQ REQUIRED IMPORTED_TARGET libzmq)
endif()
if(NOT TARGET PkgConfig::JANSSON)
  pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
endif()

add_library(crp_admin STATIC
  ${CMAKE_CURRENT_LIST_DIR}/admin.c
  ${CMAKE_CURRENT_LIST_DIR}/audit.c
  ${CMAKE_CURRENT_LIST_DIR}/alerts.c
  ${CMAKE_CURRENT_LIST_DIR}/admin_client.c
)
target_include_directories(crp_admin PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include
                                     PRIVATE ${CMAKE_CURRENT_LIST_DIR})
# jansson is public: the headers take and return json_t.
target_link_libraries(crp_admin
  PUBLIC crp_scoring crp_core PkgConfig::JANSSON PkgConfig::ZMQ Threads::Threads
  PRIVATE crp_warnings crp_sanitize)

add_executable(connrep ${CMAKE_CURRENT_LIST_DIR}/../programs/connrep.c)
target_link_libraries(connrep PRIVATE crp_admin PkgConfig::ZMQ PkgConfig::JANSSON
                                      crp_warnings crp_sanitize)
