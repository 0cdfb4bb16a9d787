# Warning flags and sanitizer options in one place.
set(MLCDN_WARN -Wall -Wextra -Wstrict-prototypes -Wshadow -Wno-unused-parameter
    -Wno-missing-field-initializers)
if(MLCDN_WERROR)
  list(APPEND MLCDN_WARN -Werror)
endif()
add_compile_options(${MLCDN_WARN})
add_compile_definitions(_GNU_SOURCE MLCDN_VERSION="${PROJECT_VERSION}")

if(MLCDN_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
  add_compile_definitions(MLCDN_DEBUG=1)
endif()

if(MLCDN_FUZZ)
  # Library code gets coverage instrumentation; the fuzzer main comes from the target link.
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
  add_compile_definitions(MLCDN_FUZZING=1 MLCDN_DEBUG=1)
endif()
