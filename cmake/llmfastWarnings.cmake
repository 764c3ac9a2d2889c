# Warnings for llmfast's own programs (tests, examples, benchmarks). Third-party headers come in
# through imported targets or SYSTEM include directories, so their warnings don't fail -Werror.
# -Werror itself is LLMFAST_WERROR (off by default, on in the presets and CI).
function(llmfast_set_warnings target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wconversion -Wshadow
                           $<$<BOOL:${LLMFAST_WERROR}>:-Werror>)
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      # g++'s ThreadSanitizer does not model std::atomic_thread_fence and says so on every use.
      target_compile_options(${target} PRIVATE $<$<BOOL:${LLMFAST_TSAN}>:-Wno-error=tsan -Wno-tsan>)
    endif()
  elseif(MSVC)
    target_compile_options(${target} PRIVATE /W4 /permissive- $<$<BOOL:${LLMFAST_WERROR}>:/WX>)
  endif()
endfunction()
