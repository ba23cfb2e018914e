// The rANS stream reader's vector loops against its scalar loop (custom_ops/src/codecs/rans_simd.h): random streams
// of 8 to 4096 lanes (the vector loops take those of 16 or more), decoded in calls of odd lengths that start at any
// lane and switch models (as ecsq decodes its scale stream, then its level stream), then truncated and corrupt
// ones. Every loop this CPU runs must give the scalar loop's symbols, lane, read position and states after every
// call, and fail in the same call with the same output. The scalar loop itself is checked against numpy by the
// golden vectors.
//   hyperonnx_rans_test
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "codecs/rans.h"
#include "rans_streams.h"

namespace rans = hyperonnx::rans;
using hyperonnx::test::draw;
using hyperonnx::test::make_table;
using hyperonnx::test::put16;
using hyperonnx::test::Table;

namespace {

int g_failures = 0;

bool check(bool ok, const std::string& what) {
  if (!ok && ++g_failures <= 20) std::fprintf(stderr, "FAIL: %s\n", what.c_str());
  return ok;
}

// Alphabets from one symbol at 4095/4096 (a word every few thousand symbols) to 256 symbols at 16 (half a word
// a symbol), so steps see every mix of lanes that take a word.
void random_table(std::mt19937_64& rng, int kind, Table* t) {
  std::vector<uint64_t> weight;
  if (kind == 0) {
    weight.assign(256, 1);
  } else if (kind == 1) {
    weight = {4095, 1};
  } else {
    weight.resize(1 + rng() % (kind == 2 ? 24 : 200));
    for (auto& v : weight) v = 1 + rng() % 1000;
  }
  const uint32_t lo = static_cast<uint32_t>(rng() % (257 - weight.size()));
  std::string error;
  check(make_table(lo, weight, t, &error), "make_table: " + error);
}

// One decode call of the plan: `len` symbols with table `table`.
struct Call {
  uint64_t len;
  int table;
};

// Calls of lengths 1 to 40 (a vector step's corners) and longer ones, switching tables, covering `count`.
std::vector<Call> make_plan(std::mt19937_64& rng, uint64_t count, int tables) {
  std::vector<Call> plan;
  const uint64_t big = std::max<uint64_t>(64, count / 40);
  for (uint64_t at = 0; at < count;) {
    const uint64_t want = rng() % 3 == 0 ? 1 + rng() % 40 : 1 + rng() % big;
    const uint64_t len = std::min(want, count - at);
    plan.push_back({len, static_cast<int>(rng() % static_cast<uint64_t>(tables))});
    at += len;
  }
  return plan;
}

const char* isa_name(rans::Isa isa) {
  return isa == rans::Isa::kAvx512 ? "avx512" : isa == rans::Isa::kAvx2 ? "avx2" : "scalar";
}

// Decodes blob with `plan` by the scalar loop and by `isa`'s in lockstep and requires the same result of every
// call. Returns whether the scalar decode succeeded and finished; *symbols gets its output.
bool compare(rans::Isa isa, const std::vector<uint8_t>& blob, uint64_t count, const std::vector<Call>& plan,
             const std::vector<Table>& tables, const std::string& label, std::vector<uint8_t>* symbols) {
  auto ref = std::make_unique<rans::Stream>(), vec = std::make_unique<rans::Stream>();
  std::string e1, e2;
  size_t p1 = 0, p2 = 0;
  const bool o1 = ref->open(blob.data(), blob.size(), &p1, count, &e1);
  const bool o2 = vec->open(blob.data(), blob.size(), &p2, count, &e2);
  const std::string what = label + " [" + isa_name(isa) + "]";
  if (!check(o1 == o2 && e1 == e2 && p1 == p2, what + ": open differs") || !o1) return false;
  const uint32_t lanes = rans::lanes_for(count);
  std::vector<uint8_t> a(count, 0xA5), b(count, 0xA5);
  uint64_t at = 0;
  bool ok = true;
  for (size_t k = 0; k < plan.size() && ok; ++k) {
    const Call& c = plan[k];
    const rans::Model& m = tables[static_cast<size_t>(c.table)].model;
    const uint32_t lane = ref->lane();
    ok = ref->decode_using(rans::Isa::kScalar, m, c.len, a.data() + at);
    const bool ok2 = vec->decode_using(isa, m, c.len, b.data() + at);
    const std::string call = what + ": call " + std::to_string(k) + " (" + std::to_string(c.len) +
                             " symbols from lane " + std::to_string(lane) + " of " + std::to_string(lanes) + ")";
    if (!check(ok == ok2, call + ": returns " + std::to_string(ok2) + ", scalar " + std::to_string(ok))) return false;
    if (!check(std::equal(a.begin() + static_cast<long>(at), a.begin() + static_cast<long>(at + c.len),
                          b.begin() + static_cast<long>(at)),
               call + ": symbols differ")) {
      return false;
    }
    if (!check(ref->lane() == vec->lane() && ref->words_read() == vec->words_read(), call + ": position differs")) {
      return false;
    }
    // Every state after short calls and failures (the vector loops' masked steps), after every 64th otherwise.
    if (!ok || c.len <= 40 || k % 64 == 0 || k + 1 == plan.size()) {
      for (uint32_t l = 0; l < lanes; ++l) {
        if (!check(ref->state(l) == vec->state(l), call + ": state of lane " + std::to_string(l) + " differs")) {
          return false;
        }
      }
    }
    at += c.len;
  }
  check(ref->finished() == vec->finished(), what + ": finished() differs");
  *symbols = a;
  return ok && ref->finished();
}

struct Stats {
  int streams = 0, calls = 0, corrupt = 0, failed_same = 0;
};

// One random stream of `count` symbols: decodes to its symbols on every loop, then truncated and corrupted copies
// decode alike on every loop.
void run_stream(std::mt19937_64& rng, uint64_t count, bool damage, const std::vector<rans::Isa>& isas, Stats* st) {
  std::vector<Table> tables(2);
  random_table(rng, static_cast<int>(rng() % 4), &tables[0]);
  random_table(rng, static_cast<int>(rng() % 4), &tables[1]);
  const std::vector<Call> plan = make_plan(rng, count, 2);
  std::vector<uint32_t> syms(count);
  std::vector<uint8_t> table_of(count);
  uint64_t at = 0;
  for (const Call& c : plan) {
    for (uint64_t i = 0; i < c.len; ++i) {
      table_of[at + i] = static_cast<uint8_t>(c.table);
      syms[at + i] = draw(rng, tables[static_cast<size_t>(c.table)]);
    }
    at += c.len;
  }
  const std::vector<uint8_t> blob = hyperonnx::test::encode(syms, table_of, tables);
  const uint32_t lanes = rans::lanes_for(count);
  const std::string label = std::to_string(count) + " symbols, " + std::to_string(lanes) + " lanes";
  ++st->streams;
  st->calls += static_cast<int>(plan.size());
  for (rans::Isa isa : isas) {
    std::vector<uint8_t> out;
    check(compare(isa, blob, count, plan, tables, label, &out), label + ": does not decode [" + isa_name(isa) + "]");
    at = 0;
    bool same = out.size() == count;
    for (const Call& c : plan) {
      const Table& t = tables[static_cast<size_t>(c.table)];
      for (uint64_t i = 0; i < c.len && same; ++i) same = out[at + i] == t.lo + syms[at + i];
      at += c.len;
    }
    check(same, label + ": decodes to other symbols [" + std::string(isa_name(isa)) + "]");
  }
  if (!damage) return;
  const size_t head = 4 * static_cast<size_t>(lanes) + 4;
  const uint64_t nwords = (blob.size() - head) / 2;
  // Truncated: fewer words (the count and the bytes), so the words run out at some symbol.
  for (uint64_t cut : {uint64_t{1}, uint64_t{2}, uint64_t{17}, nwords / 3, nwords}) {
    if (cut == 0 || cut > nwords) continue;
    std::vector<uint8_t> t(blob.begin(), blob.begin() + static_cast<long>(head + 2 * (nwords - cut)));
    const uint32_t left = static_cast<uint32_t>(nwords - cut);
    std::memcpy(t.data() + head - 4, &left, 4);  // little-endian host (x86-64, aarch64)
    for (rans::Isa isa : isas) {
      std::vector<uint8_t> out;
      check(!compare(isa, t, count, plan, tables, label + ", " + std::to_string(cut) + " words cut", &out),
            label + ": a truncated stream decodes");
      ++st->failed_same;
    }
  }
  // Corrupt: flipped word bits, random states, an extra word. They decode (or fail) alike.
  for (int trial = 0; trial < 4; ++trial) {
    std::vector<uint8_t> t = blob;
    if (trial == 3) {
      put16(&t, 0x1234);
      const uint32_t more = static_cast<uint32_t>(nwords + 1);
      std::memcpy(t.data() + head - 4, &more, 4);
    } else if (trial == 2) {
      for (int f = 0; f < 3; ++f) {
        const uint32_t s = rans::kStateLow + static_cast<uint32_t>(rng() % (0xffffffffull - rans::kStateLow));
        std::memcpy(t.data() + 4 * (rng() % lanes), &s, 4);
      }
    } else if (nwords > 0) {
      for (int f = 0; f < 1 + trial * 5; ++f) t[head + rng() % (2 * nwords)] ^= static_cast<uint8_t>(1u << (rng() % 8));
    }
    for (rans::Isa isa : isas) {
      std::vector<uint8_t> out;
      compare(isa, t, count, plan, tables, label + ", corrupt " + std::to_string(trial), &out);
      ++st->corrupt;
    }
  }
}

}  // namespace

int main() {
  std::vector<rans::Isa> isas;
  for (rans::Isa isa : {rans::Isa::kAvx2, rans::Isa::kAvx512}) {
    if (rans::isa_available(isa)) isas.push_back(isa);
  }
  // With no vector loop on this CPU the scalar loop is compared with itself: the encoder and the checks still run.
  if (isas.empty()) isas.push_back(rans::Isa::kScalar);
  std::mt19937_64 rng(2026);
  Stats st;
  for (uint64_t count : {1, 2, 7, 15, 16, 17, 31, 100, 1000, 32768}) run_stream(rng, count, true, isas, &st);
  for (uint32_t lanes : {9u, 15u, 16u, 17u, 31u, 33u, 64u}) {
    for (int r = 0; r < 3; ++r) {
      const uint64_t count = 4096 * uint64_t{lanes - 1} + 1 + rng() % 4096;
      run_stream(rng, count, true, isas, &st);
    }
  }
  for (uint32_t lanes : {2048u, 4096u}) {
    run_stream(rng, 4096 * uint64_t{lanes - 1} + 1 + rng() % 4096, false, isas, &st);
  }
  std::printf("rans vector loops (");
  for (rans::Isa isa : isas) std::printf(" %s", isa_name(isa));
  std::printf(" ): %d streams, %d calls, %d truncated, %d corrupt decodes; %d failures\n", st.streams, st.calls,
              st.failed_same, st.corrupt, g_failures);
  return g_failures ? 1 : 0;
}
