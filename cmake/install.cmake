# `make install` / `cmake --install`: the binary, man pages, documentation, configuration
# and systemd units, in the GNUInstallDirs layout (DESTDIR honoured); and the Debian
# package (`cpack -G DEB` in the build directory). What depends on the final prefix (the
# units name the installed binary and /etc files) is written at install time by
# cmake/install_system.cmake, because `cmake --install --prefix` and CPack choose the
# prefix after configuration.
include(GNUInstallDirs)

option(MLCDN_MANPAGES "Generate the man pages from each command's --help (help2man)" ON)
set(MLCDN_SYSTEMD_UNITDIR "" CACHE STRING
    "Where systemd units go (default: PREFIX/lib/systemd/system, which systemd searches for /usr and /usr/local)")

install(TARGETS mlcdn RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# Man pages: generated from the binary's own --help, so they cannot miss a flag; the
# sections --help cannot hold come from packaging/man/PAGE.h2m. One page per command of
# `mlcdn --help` (a test checks that the two lists agree).
set(MLCDN_COMMANDS run delay edge origin router cachesim plan infer ctl)
if(MLCDN_MANPAGES)
  find_program(HELP2MAN help2man)
  if(NOT HELP2MAN)
    message(FATAL_ERROR "help2man not found: scripts/install-deps.sh installs it "
                        "(Debian package help2man), or configure with -DMLCDN_MANPAGES=OFF")
  endif()
  set(MLCDN_MAN_PAGES "")
  foreach(cmd "" ${MLCDN_COMMANDS})
    if(cmd STREQUAL "")
      set(page mlcdn)
    else()
      set(page mlcdn-${cmd})
    endif()
    set(out ${CMAKE_BINARY_DIR}/man/${page}.1)
    set(h2m ${CMAKE_SOURCE_DIR}/packaging/man/${page}.h2m)
    add_custom_command(OUTPUT ${out}
      COMMAND ${CMAKE_COMMAND} -DBIN=$<TARGET_FILE:mlcdn> -DCMD=${cmd} -DOUT=${out}
              -DINCLUDE=${h2m} -DHELP2MAN=${HELP2MAN} -DVERSION=${PROJECT_VERSION}
              -P ${CMAKE_SOURCE_DIR}/cmake/man_page.cmake
      DEPENDS mlcdn ${h2m} ${CMAKE_SOURCE_DIR}/cmake/man_page.cmake
      VERBATIM)
    list(APPEND MLCDN_MAN_PAGES ${out})
  endforeach()
  add_custom_target(man ALL DEPENDS ${MLCDN_MAN_PAGES})
  install(FILES ${MLCDN_MAN_PAGES} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
endif()

# User documentation keeps the repository's relative layout, so README.md's links to
# docs/*.md still resolve; configuration examples go beside it.
file(GLOB MLCDN_USER_DOCS ${CMAKE_SOURCE_DIR}/docs/*.md)
file(GLOB MLCDN_CONF_EXAMPLES ${CMAKE_SOURCE_DIR}/conf/*.conf)
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${MLCDN_USER_DOCS} DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs)
install(FILES ${MLCDN_CONF_EXAMPLES} DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
# The Prometheus scrape configuration and alert rules, and the Grafana dashboard.
install(DIRECTORY ${CMAKE_SOURCE_DIR}/conf/prometheus ${CMAKE_SOURCE_DIR}/conf/grafana
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

install(CODE "
set(MLCDN_SOURCE_DIR \"${CMAKE_SOURCE_DIR}\")
set(MLCDN_BINARY_DIR \"${CMAKE_BINARY_DIR}\")
set(MLCDN_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
set(MLCDN_DOCDIR \"${CMAKE_INSTALL_DOCDIR}\")
set(MLCDN_SYSCONFDIR \"${CMAKE_INSTALL_SYSCONFDIR}\")
set(MLCDN_SYSTEMD_UNITDIR \"${MLCDN_SYSTEMD_UNITDIR}\")
")
install(SCRIPT ${CMAKE_SOURCE_DIR}/cmake/install_system.cmake)

# The Debian package: `cpack -G DEB` (or `make package`) in a build configured like this.
set(MLCDN_PACKAGE_CONTACT "mlcdn maintainers" CACHE STRING "Maintainer field of the .deb")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mlcdn)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${MLCDN_PACKAGE_CONTACT}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "CDN for ML systems: edge cache and inference, GeoDNS router, reference origin")
set(CPACK_PACKAGE_DESCRIPTION
    "mlcdn serves ML predictions (ONNX models run at the edge), static ML assets and cached\n"
    "API responses from edges close to users; a GeoDNS router sends each client to the\n"
    "best healthy edge. Includes systemd units for the edge, the router and the origin.")
# The units name /usr/bin/mlcdn and /etc/mlcdn: the package installs under /usr, and the
# staging tree is reached through DESTDIR so that install_system.cmake sees the real prefix.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
# Library dependencies computed from the binary (dpkg-shlibdeps), not written by hand.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "redis-server")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/packaging/deb/conffiles ${CMAKE_SOURCE_DIR}/packaging/deb/postinst
    ${CMAKE_SOURCE_DIR}/packaging/deb/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
