# layers.cmake: br_layer(NAME DIR DEPS dep... [PURE]) builds DIR/*.c into the
# static library NAME, linked against DEPS, and checks the layering:
#  - NAME_check, a shared object of the same objects linked with DEPS only and
#    -Wl,--no-undefined: a symbol of a layer above NAME cannot resolve there,
#    so an upward call fails the build, not a review;
#  - PURE: after each build, nm lists the library's undefined symbols and a
#    system call that reads or writes files, processes, sockets or clocks
#    fails the build (the pure core is functions from bytes to values).
set(BR_IMPURE_SYMBOLS
  open open64 openat openat2 creat read pread write pwrite close fopen fdopen fread fwrite
  stat lstat fstat fstatat statx opendir readdir mkdir mkdirat unlink unlinkat rename renameat renameat2
  fsync fdatasync flock socket connect bind accept kill fork vfork execve execvp posix_spawn
  clock_gettime time gettimeofday nanosleep usleep getenv)

function(br_layer name dir)
  cmake_parse_arguments(L "PURE" "" "DEPS" ${ARGN})
  file(GLOB src CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/${dir}/*.c)
  add_library(${name} STATIC ${src})
  target_include_directories(${name} PUBLIC ${CMAKE_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${L_DEPS})

  add_library(${name}_check SHARED $<TARGET_OBJECTS:${name}>)
  target_link_libraries(${name}_check PRIVATE ${L_DEPS})
  target_link_options(${name}_check PRIVATE -Wl,--no-undefined)

  if(L_PURE)
    string(REPLACE ";" " " impure "${BR_IMPURE_SYMBOLS}")
    add_custom_command(TARGET ${name} POST_BUILD
      COMMAND sh -c "bad=$(nm -u --format=just-symbols $<TARGET_FILE:${name}> | sed 's/@.*//' | sort -u | grep -xF \"$(printf '%s\\n' ${impure})\"); if [ -n \"$bad\" ]; then echo \"${dir} is the pure core, yet calls: $bad\" >&2; exit 1; fi"
      VERBATIM)
  endif()
endfunction()
