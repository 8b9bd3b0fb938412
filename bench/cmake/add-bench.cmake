# Used by bench/run only while the top-level CMakeLists.txt lacks
#   if(REMORA_BENCH) add_subdirectory(bench) endif()
# Given as CMAKE_PROJECT_remora_INCLUDE, it runs inside project(remora) and
# defers bench/CMakeLists.txt to the end of the top-level file, once the module
# libraries exist (deferred calls may include() but not add_subdirectory();
# their arguments are expanded when they run, hence the variable).
get_filename_component(REMORA_BENCH_LISTS "${CMAKE_CURRENT_LIST_DIR}/../CMakeLists.txt" ABSOLUTE)
cmake_language(DEFER CALL include "${REMORA_BENCH_LISTS}")
