"""Conan 2 recipe for llmfast (header-only). `conan create . --version 0.2.0` from the repository root.

The package is the tree `cmake --install` produces; consumers use the CMakeDeps-generated targets
`llmfast::llmfast` (and `llmfast::hnsw` with the `with_hnsw` option, `llmfast::redis` with `with_redis`).
"""
import os

from conan import ConanFile
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, load
from conan.tools.build import check_min_cppstd


class LlmfastConan(ConanFile):
    name = "llmfast"
    description = ("Header-only C++20 library for the request path to large language models: streaming, "
                   "dynamic batching, semantic cache, prompt compression, token-budget truncation.")
    license = "Apache-2.0"
    url = "https://github.com/llmfast/llmfast"
    homepage = "https://github.com/llmfast/llmfast"
    topics = ("llm", "batching", "cache", "streaming", "sse", "tokenizer", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    options = {"with_hnsw": [True, False], "with_redis": [True, False]}
    default_options = {"with_hnsw": False, "with_redis": False}
    exports_sources = "CMakeLists.txt", "cmake/*", "include/*", "LICENSE"
    no_copy_source = True

    def set_version(self):
        if self.version:
            return
        text = load(self, os.path.join(self.recipe_folder, "include", "llmfast", "version.hpp"))
        parts = {}
        for line in text.splitlines():
            for part in ("MAJOR", "MINOR", "PATCH"):
                prefix = f"#define LLMFAST_VERSION_{part} "
                if line.startswith(prefix):
                    parts[part] = line[len(prefix):].strip()
        self.version = f"{parts['MAJOR']}.{parts['MINOR']}.{parts['PATCH']}"

    def layout(self):
        cmake_layout(self)

    def requirements(self):
        self.requires("fmt/[>=9 <12]", transitive_headers=True)
        self.requires("xxhash/[>=0.8.1 <0.9]", transitive_headers=True)
        if self.options.with_hnsw:
            self.requires("hnswlib/[>=0.6 <1]", transitive_headers=True)
        if self.options.with_redis:
            self.requires("hiredis/[>=1.0 <2]", transitive_headers=True, transitive_libs=True)

    def validate(self):
        check_min_cppstd(self, 20)

    def package_id(self):
        self.info.clear()

    def generate(self):
        tc = CMakeToolchain(self)
        for option in ("TESTS", "EXAMPLES", "BENCHMARKS"):
            tc.variables[f"LLMFAST_BUILD_{option}"] = False
        tc.generate()
        CMakeDeps(self).generate()  # fmt-config.cmake, xxHash-config.cmake (hiredis-config.cmake) for the install step

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        cmake = CMake(self)
        cmake.configure()
        cmake.install()

    def package_info(self):
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.set_property("cmake_file_name", "llmfast")
        self.cpp_info.set_property("pkg_config_name", "llmfast")
        core = self.cpp_info.components["core"]
        core.set_property("cmake_target_name", "llmfast::llmfast")
        core.requires = ["fmt::fmt", "xxhash::xxhash"]
        if self.settings.os in ("Linux", "FreeBSD"):
            core.system_libs = ["pthread"]
        if self.options.with_hnsw:
            hnsw = self.cpp_info.components["hnsw"]
            hnsw.set_property("cmake_target_name", "llmfast::hnsw")
            hnsw.requires = ["core", "hnswlib::hnswlib"]
        if self.options.with_redis:
            redis = self.cpp_info.components["redis"]
            redis.set_property("cmake_target_name", "llmfast::redis")
            redis.requires = ["core", "hiredis::hiredis"]
