# The Debian package (scripts/package.sh): one otpd_<version>_amd64.deb with
# the programs, the static libraries and headers, the CMake and pkg-config
# files, /etc/otpd/otpd.yaml (a conffile) and, when present, the systemd unit.
# Configure with -DCMAKE_INSTALL_PREFIX=/usr so the config lands in /etc.
# Needs otpdInstall.cmake first (otpd_conf_dir).
include_guard(GLOBAL)

set(OTPD_PACKAGE_MAINTAINER "otpd maintainers <otpd@example.org>"
    CACHE STRING "Maintainer field of the Debian package")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME otpd)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "otpd")
set(CPACK_PACKAGE_CONTACT ${OTPD_PACKAGE_MAINTAINER})
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
# Binaries are built with debug info; the package carries them stripped,
# and the static libraries without their debug sections (as dh_strip does).
set(CPACK_STRIP_FILES ON)
set(CPACK_PRE_BUILD_SCRIPTS ${CMAKE_CURRENT_LIST_DIR}/otpdStripStatic.cmake)
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/dist)

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # otpd_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_MAINTAINER ${OTPD_PACKAGE_MAINTAINER})
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "process supervisor with Erlang/OTP's process model")
# The synopsis is the summary above; this is the extended description.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "otpd supervises OS processes as Erlang/OTP supervises its processes:
supervision trees with one_for_one, one_for_all, rest_for_one and
simple_one_for_one strategies, restart intensity, readiness, monitors
and names. Workers written in C++ against its runtime are GenServers
with call, cast and info.
.
This package holds the daemon otpd, its control tool otpctl, the
otp-table and otp-redis tools, the worker programs, and the static
libraries with their headers, CMake package and pkg-config file.")
# Library dependencies come from dpkg-shlibdeps; adduser is for postinst.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
# The example config is a conffile: dpkg keeps the admin's edits on upgrade.
if(IS_ABSOLUTE ${otpd_conf_dir})
  set(otpd_conffile ${otpd_conf_dir}/otpd.yaml)
else()
  set(otpd_conffile ${CMAKE_INSTALL_PREFIX}/${otpd_conf_dir}/otpd.yaml)
endif()
file(WRITE ${CMAKE_BINARY_DIR}/conffiles "${otpd_conffile}\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_BINARY_DIR}/conffiles ${PROJECT_SOURCE_DIR}/packaging/debian/postinst
    ${PROJECT_SOURCE_DIR}/packaging/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

include(CPack)
