// Replays a fuzz target's corpus without libFuzzer, so ordinary (GCC) builds run the checked-in
// inputs under ctest. Linked only into non-fuzzer builds; with -fsanitize=fuzzer libFuzzer
// provides main().
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIRECTORY\n", argc > 0 ? argv[0] : "replay");
    return 2;
  }
  namespace fs = std::filesystem;
  const fs::path dir = argv[1];
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    std::fprintf(stderr, "corpus directory not found: %s\n", dir.string().c_str());
    return 1;
  }
  std::vector<fs::path> files;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  if (ec) {
    std::fprintf(stderr, "cannot list %s: %s\n", dir.string().c_str(), ec.message().c_str());
    return 1;
  }
  if (files.empty()) {
    std::fprintf(stderr, "corpus directory is empty: %s\n", dir.string().c_str());
    return 1;
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "cannot read %s\n", file.string().c_str());
      return 1;
    }
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
    // A heap copy of exactly the file's size (no spare capacity), so AddressSanitizer reports
    // any read past the input, as it would under libFuzzer.
    const auto input = std::make_unique<std::uint8_t[]>(bytes.size());
    std::transform(bytes.begin(), bytes.end(), input.get(),
                   [](char c) { return static_cast<std::uint8_t>(c); });
    LLVMFuzzerTestOneInput(input.get(), bytes.size());
  }
  std::printf("replayed %zu inputs\n", files.size());
  return 0;
}
