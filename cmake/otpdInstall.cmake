# What `cmake --install` adds beyond the targets (which otpd_library and
# otpd_install_programs install): the CMake package (find_package(otpd)), the
# pkg-config file, the example config, the docs, and the systemd unit.
include_guard(GLOBAL)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(otpd_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/otpd)
install(EXPORT otpdTargets NAMESPACE otpd:: DESTINATION ${otpd_cmake_dir})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/otpdConfig.cmake.in
                              ${CMAKE_BINARY_DIR}/otpdConfig.cmake
                              INSTALL_DESTINATION ${otpd_cmake_dir})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/otpdConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/otpdConfig.cmake ${CMAKE_BINARY_DIR}/otpdConfigVersion.cmake
        DESTINATION ${otpd_cmake_dir})

# otpd.pc finds the prefix from its own directory, so an install moved with
# --prefix or DESTDIR still works: climb one level per component of libdir/pkgconfig.
file(RELATIVE_PATH otpd_pc_up /x/${CMAKE_INSTALL_LIBDIR}/pkgconfig /x)
configure_file(${CMAKE_CURRENT_LIST_DIR}/otpd.pc.in ${CMAKE_BINARY_DIR}/otpd.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/otpd.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# With the prefix /usr (a distribution package) the config goes to /etc and
# the unit to /lib/systemd/system; anywhere else both stay under the prefix.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(otpd_conf_dir /etc/otpd)
  set(otpd_unit_dir /lib/systemd/system)
else()
  set(otpd_conf_dir ${CMAKE_INSTALL_SYSCONFDIR}/otpd)
  set(otpd_unit_dir ${CMAKE_INSTALL_LIBDIR}/systemd/system)
endif()
set(otpd_packaging_dir ${PROJECT_SOURCE_DIR}/packaging)
install(FILES ${otpd_packaging_dir}/otpd.yaml DESTINATION ${otpd_conf_dir})
if(EXISTS ${otpd_packaging_dir}/otpd.service)
  install(FILES ${otpd_packaging_dir}/otpd.service DESTINATION ${otpd_unit_dir})
endif()

# Debian wants the copyright and a gzipped changelog in the package's doc dir.
set(otpd_doc_dir ${CMAKE_INSTALL_DATAROOTDIR}/doc/otpd)
# The license named in packaging/debian/copyright (the project's DEP-5 file),
# pointing to Debian's copy of its text as Debian policy asks, not quoting it.
set(otpd_license unknown)
if(EXISTS ${otpd_packaging_dir}/debian/copyright)
  set_property(DIRECTORY ${PROJECT_SOURCE_DIR} APPEND
               PROPERTY CMAKE_CONFIGURE_DEPENDS ${otpd_packaging_dir}/debian/copyright)
  file(STRINGS ${otpd_packaging_dir}/debian/copyright otpd_license_line
       REGEX "^License: " LIMIT_COUNT 1)
  string(REPLACE "License: " "" otpd_license "${otpd_license_line}")
endif()
set(otpd_license_text " The license is in the LICENSE file of the otpd sources.")
if(EXISTS /usr/share/common-licenses/${otpd_license})
  set(otpd_license_text " On Debian systems, the complete text of the license can be found in\n"
                        " /usr/share/common-licenses/${otpd_license}.")
endif()
set(otpd_copyright ${CMAKE_BINARY_DIR}/copyright)
string(TIMESTAMP otpd_year "%Y" UTC)
file(WRITE ${otpd_copyright}
     "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
     "Upstream-Name: otpd\n\nFiles: *\nCopyright: ${otpd_year} The otpd authors\n"
     "License: ${otpd_license}\n" ${otpd_license_text} "\n")
install(FILES ${otpd_copyright} DESTINATION ${otpd_doc_dir})
set_property(DIRECTORY ${PROJECT_SOURCE_DIR} APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
                                                      ${otpd_packaging_dir}/debian/changelog)
execute_process(COMMAND gzip -9nc ${otpd_packaging_dir}/debian/changelog
                OUTPUT_FILE ${CMAKE_BINARY_DIR}/changelog.gz COMMAND_ERROR_IS_FATAL ANY)
install(FILES ${CMAKE_BINARY_DIR}/changelog.gz DESTINATION ${otpd_doc_dir})
