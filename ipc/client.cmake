# libconnrep, the client library relay workers link (ipc/client.c, public
# header ipc/include/connrep.h). Included from ipc/CMakeLists.txt:
#   include(${CMAKE_CURRENT_SOURCE_DIR}/client.cmake)
#
# Targets: libconnrep (shared, libconnrep.so.1) and libconnrep_static
# (libconnrep.a). Not named "connrep": that is the admin CLI's name.
#
# Both are built from one set of objects holding exactly what a lookup
# needs: the client, the table (for its read path), the error texts and the
# wire codec. The sources are compiled here rather than linked from
# crp_core/crp_wire so that the static archive is self-contained once
# installed (those module libraries are not installed) and so that every
# internal symbol is hidden: the shared library exports connrep_* only
# (-fvisibility=hidden plus a version script), and pulls in no allocator,
# no config parser, no scoring.
include(GNUInstallDirs)
if(NOT TARGET PkgConfig::ZMQ)
  pkg_check_modules(ZMQ REQUIRED IMPORTED_TARGET libzmq)
endif()

set(CONNREP_LIB_VERSION 1.0.0)
set(CONNREP_LIB_SOVERSION 1)

add_library(connrep_objects OBJECT
  ${CMAKE_CURRENT_LIST_DIR}/client.c
  ${CMAKE_CURRENT_LIST_DIR}/wire.c
  ${PROJECT_SOURCE_DIR}/core/table.c
  ${PROJECT_SOURCE_DIR}/core/err.c
  ${PROJECT_SOURCE_DIR}/core/clock.c)
set_target_properties(connrep_objects PROPERTIES
  C_VISIBILITY_PRESET hidden
  POSITION_INDEPENDENT_CODE ON)
target_include_directories(connrep_objects PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/include
  ${PROJECT_SOURCE_DIR}/core/include
  $<TARGET_PROPERTY:PkgConfig::XXHASH,INTERFACE_INCLUDE_DIRECTORIES>)
target_link_libraries(connrep_objects PRIVATE PkgConfig::ZMQ crp_warnings crp_sanitize)

# Only the public API leaves the shared object, under version node CONNREP_1.
set(CONNREP_MAP ${CMAKE_CURRENT_BINARY_DIR}/connrep.map)
file(WRITE ${CONNREP_MAP} "CONNREP_1 {\n  global: connrep_*;\n  local: *;\n};\n")

add_library(libconnrep SHARED $<TARGET_OBJECTS:connrep_objects>)
set_target_properties(libconnrep PROPERTIES
  OUTPUT_NAME connrep
  VERSION ${CONNREP_LIB_VERSION}
  SOVERSION ${CONNREP_LIB_SOVERSION}
  LINK_DEPENDS ${CONNREP_MAP})
target_include_directories(libconnrep PUBLIC
  $<BUILD_INTERFACE:${CMAKE_CURRENT_LIST_DIR}/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
# --as-needed: no DT_NEEDED for anything unused. Sanitized builds leave the
# runtime's symbols undefined in shared objects, so --no-undefined (which
# catches a source missing from the list above) only applies without them.
target_link_options(libconnrep PRIVATE -Wl,--version-script=${CONNREP_MAP} -Wl,--as-needed)
if(CONNREP_SANITIZE STREQUAL "none")
  target_link_options(libconnrep PRIVATE -Wl,--no-undefined)
endif()
target_link_libraries(libconnrep PRIVATE PkgConfig::ZMQ Threads::Threads rt crp_sanitize)

add_library(libconnrep_static STATIC $<TARGET_OBJECTS:connrep_objects>)
set_target_properties(libconnrep_static PROPERTIES OUTPUT_NAME connrep)
target_include_directories(libconnrep_static PUBLIC
  $<BUILD_INTERFACE:${CMAKE_CURRENT_LIST_DIR}/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_link_libraries(libconnrep_static INTERFACE PkgConfig::ZMQ Threads::Threads rt)

# pkg-config file: relocatable (paths relative to the .pc file), so
# `cmake --install build --prefix DIR` works for any DIR.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(CONNREP_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(CONNREP_PC_LIBDIR "${CMAKE_INSTALL_FULL_LIBDIR}")
  set(CONNREP_PC_INCLUDEDIR "${CMAKE_INSTALL_FULL_INCLUDEDIR}")
else()
  file(RELATIVE_PATH _connrep_up "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
  string(REGEX REPLACE "/$" "" _connrep_up "${_connrep_up}")
  set(CONNREP_PC_PREFIX "\${pcfiledir}/${_connrep_up}")
  set(CONNREP_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
  set(CONNREP_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/connrep.pc.in ${CMAKE_CURRENT_BINARY_DIR}/connrep.pc @ONLY)

install(TARGETS libconnrep libconnrep_static
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${CMAKE_CURRENT_LIST_DIR}/include/connrep.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/connrep.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
