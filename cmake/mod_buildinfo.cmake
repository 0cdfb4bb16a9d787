# gen/build_info.h: the git commit the binary was built from (mlcdn_build_info metric,
# `mlcdn --version`). Only src/main.c includes it.
add_custom_target(mlcdn_build_info
  COMMAND ${CMAKE_COMMAND} -DSRC=${CMAKE_SOURCE_DIR} -DOUT=${CMAKE_BINARY_DIR}/gen/build_info.h
          -P ${CMAKE_SOURCE_DIR}/cmake/build_info.cmake
  BYPRODUCTS ${CMAKE_BINARY_DIR}/gen/build_info.h
  COMMENT "")
