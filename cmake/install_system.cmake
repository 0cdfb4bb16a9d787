# Runs at install time (make install, cmake --install [--prefix], CPack), once
# CMAKE_INSTALL_PREFIX is final: writes the systemd units naming the installed binary and
# configuration, and installs the configuration the units read. install.cmake sets the
# MLCDN_* variables (relative GNUInstallDirs paths and the source directory).
set(prefix "${CMAKE_INSTALL_PREFIX}")

# GNUInstallDirs' rule, applied to the final prefix: /usr keeps its configuration in
# /etc, /opt/NAME in /etc/opt/NAME, any other prefix in PREFIX/etc.
if(IS_ABSOLUTE "${MLCDN_SYSCONFDIR}")
  set(etc "${MLCDN_SYSCONFDIR}")
elseif(prefix STREQUAL "/usr")
  set(etc "/etc")
elseif(prefix MATCHES "^/opt/")
  set(etc "/etc${prefix}")
else()
  set(etc "${prefix}/${MLCDN_SYSCONFDIR}")
endif()
if(MLCDN_SYSTEMD_UNITDIR)
  set(unitdir "${MLCDN_SYSTEMD_UNITDIR}")
else()
  set(unitdir "${prefix}/lib/systemd/system")
endif()

set(MLCDN_BINDIR "${prefix}/${MLCDN_BINDIR}")
set(MLCDN_DOCDIR "${prefix}/${MLCDN_DOCDIR}/docs")
set(MLCDN_SYSCONFDIR "${etc}")
set(gen "${MLCDN_BINARY_DIR}/packaging-gen")
foreach(daemon edge router origin)
  configure_file("${MLCDN_SOURCE_DIR}/packaging/systemd/mlcdn-${daemon}.service.in"
                 "${gen}/mlcdn-${daemon}.service" @ONLY)
  file(INSTALL "${gen}/mlcdn-${daemon}.service" DESTINATION "${unitdir}"
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  # An operator's edited configuration is never overwritten by a later install.
  if(EXISTS "$ENV{DESTDIR}${etc}/mlcdn/${daemon}.conf")
    message(STATUS "Keeping: $ENV{DESTDIR}${etc}/mlcdn/${daemon}.conf")
  else()
    file(INSTALL "${MLCDN_SOURCE_DIR}/packaging/etc/${daemon}.conf" DESTINATION "${etc}/mlcdn"
         PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  endif()
endforeach()
