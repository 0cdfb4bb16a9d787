# src/router: the dashboard's page and script (src/router/dash/) become a C file of arrays
# at build time, so the binary serves them with nothing to install beside it.
file(GLOB ROUTER_DASH_FILES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/router/dash/*)
set(ROUTER_DASH_C ${CMAKE_BINARY_DIR}/gen/router_dash_files.c)
add_custom_command(
  OUTPUT ${ROUTER_DASH_C}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/gen
  COMMAND ${CMAKE_COMMAND} -DDIR=${CMAKE_SOURCE_DIR}/src/router/dash -DOUT=${ROUTER_DASH_C}
          -P ${CMAKE_SOURCE_DIR}/cmake/embed_files.cmake
  DEPENDS ${ROUTER_DASH_FILES} ${CMAKE_SOURCE_DIR}/cmake/embed_files.cmake
  COMMENT "embedding the router's dashboard")
set_source_files_properties(${ROUTER_DASH_C} PROPERTIES GENERATED TRUE)
target_sources(mlcdn_lib PRIVATE ${ROUTER_DASH_C})
