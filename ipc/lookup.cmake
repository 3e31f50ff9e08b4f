# The engine's lookup server (ipc/lookup.c): one thread, one ROUTER socket.
# Included from ipc/CMakeLists.txt, after crp_wire is defined:
#   include(${CMAKE_CURRENT_SOURCE_DIR}/lookup.cmake)
# It does not link the engine: the engine passes its statistics functions
# at start (crp_lookup_hooks), so the server is tested without it.
if(NOT TARGET PkgConfig::ZMQ)
  pkg_check_modules(ZMQ REQUIRED IMPORTED_TARGET libzmq)
endif()

add_library(crp_lookup STATIC ${CMAKE_CURRENT_LIST_DIR}/lookup.c)
target_include_directories(crp_lookup PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include
                                      PRIVATE ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(crp_lookup
  PUBLIC crp_wire crp_core PkgConfig::ZMQ Threads::Threads
  PRIVATE crp_warnings crp_sanitize)
