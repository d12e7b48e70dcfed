# CPack pre-build script: strips the debug sections from the staged static
# libraries (CPACK_STRIP_FILES strips only the programs).
file(GLOB_RECURSE otpd_static_libs "${CPACK_TEMPORARY_INSTALL_DIRECTORY}/*.a")
foreach(lib ${otpd_static_libs})
  execute_process(COMMAND strip --strip-debug --remove-section=.comment --remove-section=.note
                          --enable-deterministic-archives ${lib} COMMAND_ERROR_IS_FATAL ANY)
endforeach()
