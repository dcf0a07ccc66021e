# Writes a C++ source defining `extern const std::string_view <SYMBOL>` in namespace
# <NAMESPACE>, holding the bytes of <INPUT> exactly (any bytes: each is a \x escape).
# Run as: cmake -DINPUT=... -DOUTPUT=... -DSYMBOL=... -DNAMESPACE=... -DHEADER=... -P embed.cmake
foreach(var INPUT OUTPUT SYMBOL NAMESPACE HEADER)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "embed.cmake: ${var} is not set")
  endif()
endforeach()

file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REPEAT "[0-9a-f]" 64 line_re)
string(REGEX REPLACE "(${line_re})" "\\1\n" hex "${hex}")            # 32 bytes per line
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "\\\\x\\1" hex "${hex}")   # each byte as \xNN
string(REGEX REPLACE "([^\n]+)" "    \"\\1\"" lines "${hex}")        # each line one literal;
                                                                    # the compiler joins them
get_filename_component(input_name "${INPUT}" NAME)

set(content "// Generated from ${input_name} by embed.cmake at build time; do not edit.
#include \"${HEADER}\"

namespace ${NAMESPACE} {
namespace {
constexpr char kBytes[] =
    \"\"
${lines}
    ;
}  // namespace

const std::string_view ${SYMBOL}{kBytes, ${size}};

}  // namespace ${NAMESPACE}
")

file(WRITE "${OUTPUT}" "${content}")
