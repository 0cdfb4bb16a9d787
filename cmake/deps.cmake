# Every external library comes from Debian (scripts/install-deps.sh installs them).
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
pkg_check_modules(UV REQUIRED IMPORTED_TARGET libuv)
pkg_check_modules(CURL REQUIRED IMPORTED_TARGET libcurl)
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
pkg_check_modules(MAXMINDDB REQUIRED IMPORTED_TARGET libmaxminddb)
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)
pkg_check_modules(OPENSSL REQUIRED IMPORTED_TARGET libssl libcrypto)
pkg_check_modules(PROTOBUFC REQUIRED IMPORTED_TARGET libprotobuf-c)
pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)
pkg_check_modules(LIBCONFIG REQUIRED IMPORTED_TARGET libconfig)
pkg_check_modules(NGHTTP2 REQUIRED IMPORTED_TARGET libnghttp2)
# `mlcdn ctl top`'s screen.
pkg_check_modules(NCURSES REQUIRED IMPORTED_TARGET ncursesw)
pkg_check_modules(CMOCKA IMPORTED_TARGET cmocka)

set(MLCDN_DEP_LIBS PkgConfig::UV PkgConfig::CURL PkgConfig::HIREDIS PkgConfig::MAXMINDDB
    PkgConfig::JANSSON PkgConfig::XXHASH PkgConfig::OPENSSL PkgConfig::PROTOBUFC
    PkgConfig::OPENBLAS PkgConfig::LIBCONFIG PkgConfig::NGHTTP2 PkgConfig::NCURSES)
set(CMOCKA_LIBRARIES PkgConfig::CMOCKA)
