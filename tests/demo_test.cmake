# demo_test runs the built demo: it gets the path of the `llmfast-demo` target (examples/, which is
# added after tests/, hence a generator expression) and makes sure it is built first. Without the
# examples (LLMFAST_BUILD_EXAMPLES=OFF: the asan, tsan, clang and single presets) the variable is
# absent and the test reports itself skipped. With the gateway (LLMFAST_BUILD_GATEWAY) it also gets
# llmfast-gateway's path, for the demo's --through-gateway run.
if(TARGET demo_test AND LLMFAST_BUILD_EXAMPLES)
  if(LLMFAST_BUILD_GATEWAY)
    set_tests_properties(demo_test PROPERTIES ENVIRONMENT
      "LLMFAST_DEMO=$<TARGET_FILE:llmfast-demo>;LLMFAST_GATEWAY=$<TARGET_FILE:llmfast-gateway>")
    add_dependencies(demo_test llmfast-demo llmfast-gateway)
  else()
    set_tests_properties(demo_test PROPERTIES ENVIRONMENT "LLMFAST_DEMO=$<TARGET_FILE:llmfast-demo>")
    add_dependencies(demo_test llmfast-demo)
  endif()
endif()
