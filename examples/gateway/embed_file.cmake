# Writes a C++ header holding a file's bytes: cmake -DINPUT=<file> -DOUTPUT=<header> -DNAME=<identifier> -P embed_file.cmake
# (a byte array, not a raw string literal: any byte sequence, including `)"`, embeds unchanged).
file(READ "${INPUT}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REPEAT "0x[0-9a-f][0-9a-f]," 24 line)  # CMake's regular expressions have no {n}
string(REGEX REPLACE "(${line})" "\\1\n    " bytes "${bytes}")
get_filename_component(source_name "${INPUT}" NAME)
file(WRITE "${OUTPUT}.tmp"
     "// generated from ${source_name} by embed_file.cmake at build time: edit ${source_name}, not this file\n"
     "#pragma once\n"
     "inline constexpr unsigned char ${NAME}[] = {\n    ${bytes}\n};\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
