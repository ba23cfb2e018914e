// Replays the fast path's fuzz target (tools/fuzz/fast_fuzz.cc) over the seed models in a folder
// (tests/fuzz_corpus/fast/), each also truncated at many lengths and with deterministic bit flips: ctest
// `fast_rewrite`, run under ASan + UBSan by tests/reliability/test_sanitizers.py and under qemu by tests/platform/test_edge.py, so the
// ONNX reader is checked even where no libFuzzer is installed.
#include <dirent.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  DIR* dir = opendir(argv[1]);
  if (!dir) {
    std::fprintf(stderr, "cannot open %s\n", argv[1]);
    return 2;
  }
  int files = 0;
  long runs = 0;
  uint64_t s = 1;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream f(std::string(argv[1]) + "/" + e->d_name, std::ios::binary);
    std::vector<uint8_t> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    ++files;
    LLVMFuzzerTestOneInput(data.data(), data.size());
    ++runs;
    const size_t step = data.size() / 61 + 1;
    for (size_t cut = 0; cut < data.size(); cut += step, ++runs) {
      std::vector<uint8_t> head(data.begin(), data.begin() + static_cast<long>(cut));  // own buffer: ASan sees overreads
      LLVMFuzzerTestOneInput(head.data(), head.size());
    }
    for (int k = 0; k < 64 && !data.empty(); ++k, ++runs) {
      std::vector<uint8_t> flipped = data;
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      flipped[(s >> 33) % flipped.size()] ^= static_cast<uint8_t>(1u << ((s >> 20) & 7));
      LLVMFuzzerTestOneInput(flipped.data(), flipped.size());
    }
  }
  closedir(dir);
  std::printf("fast_rewrite: %d files, %ld inputs, 0 failures\n", files, runs);
  return files > 0 ? 0 : 1;
}
