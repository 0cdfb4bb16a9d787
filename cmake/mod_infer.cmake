# src/infer: C code for onnx.proto is generated at build time with protoc-c from the
# Debian libonnx-dev copy of the schema, so the loader follows the system's ONNX version.
find_program(PROTOC_C protoc-c REQUIRED)
set(INFER_ONNX_PROTO /usr/include/onnx/onnx.proto)
set(INFER_GEN_DIR ${CMAKE_BINARY_DIR}/gen/onnx)
add_custom_command(
  OUTPUT ${INFER_GEN_DIR}/onnx.pb-c.c ${INFER_GEN_DIR}/onnx.pb-c.h
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/gen
  COMMAND ${PROTOC_C} --c_out=${CMAKE_BINARY_DIR}/gen -I/usr/include ${INFER_ONNX_PROTO}
  DEPENDS ${INFER_ONNX_PROTO}
  COMMENT "protoc-c onnx.proto")
# Generated code is not ours to keep warning-free.
set_source_files_properties(${INFER_GEN_DIR}/onnx.pb-c.c PROPERTIES GENERATED TRUE COMPILE_OPTIONS "-w")
set_source_files_properties(${INFER_GEN_DIR}/onnx.pb-c.h PROPERTIES GENERATED TRUE)
target_sources(mlcdn_lib PRIVATE ${INFER_GEN_DIR}/onnx.pb-c.c ${INFER_GEN_DIR}/onnx.pb-c.h)

# ONNX's own node tests (libonnx-testdata) through the CLI's conformance runner.
if(MLCDN_TESTS AND EXISTS /usr/share/libonnx-testdata/data/node)
  add_test(NAME infer/conformance
           COMMAND mlcdn infer --conformance /usr/share/libonnx-testdata/data/node
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(infer/conformance PROPERTIES TIMEOUT 300)
endif()
