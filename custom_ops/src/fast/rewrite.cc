#include "fast/rewrite.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <utility>

#include "attrs.h"
#include "decoder.h"
#include "fast/model_file.h"
#include "fast/wire.h"
#include "parallel.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "TensorProto.raw_data is little-endian: the fast path writes decoded tensors as they lie in memory"
#endif

namespace hyperonnx {
namespace fast {

using wire::Field;

// ONNX field numbers (onnx/onnx.proto).
enum : uint32_t {
  kModelGraph = 7, kModelOpset = 8,
  kGraphNode = 1, kGraphInitializer = 5, kGraphInput = 11, kGraphOutput = 12,
  kNodeInput = 1, kNodeOutput = 2, kNodeName = 3, kNodeOpType = 4, kNodeAttribute = 5, kNodeDomain = 7,
  kModelIrVersion = 1,
  kAttrName = 1, kAttrF = 2, kAttrI = 3, kAttrS = 4, kAttrG = 6, kAttrFloats = 7, kAttrInts = 8, kAttrGraphs = 11,
  kAttrType = 20,
  kTensorDims = 1, kTensorDataType = 2, kTensorInt32Data = 5, kTensorName = 8, kTensorRawData = 9,
  kTensorExternalData = 13, kTensorDataLocation = 14,
  kEntryKey = 1, kEntryValue = 2,
  kOpsetDomain = 1,
};
enum : uint64_t { kAttrTypeFloat = 1, kAttrTypeInt = 2, kAttrTypeString = 3, kAttrTypeFloats = 6, kAttrTypeInts = 7 };
constexpr int64_t kUint8 = 2;
constexpr int kMaxDepth = 64;  // subgraph nesting (ORT's own protobuf recursion limit is 100)
constexpr const char* kDomainName = "ai.hyperonnx";
constexpr const char* kOpName = "HyperDecode";

struct Piece {
  const uint8_t* p;  // bytes to copy, or null: the decoded tensor of job `job`
  size_t n;
  int job;
};

struct Node {
  size_t field = 0;  // index into Graph::fields
  std::string name, op_type, domain;
  std::vector<std::string> inputs, outputs;
  std::vector<Field> attributes;                             // AttributeProto payloads
  std::vector<std::pair<const uint8_t*, Graph*>> subgraphs;  // by payload address
  int job = -1;                                              // replaced by this job's tensor
};

struct Graph {
  Graph* parent = nullptr;
  int depth = 0;
  std::vector<Field> fields;
  std::vector<int> node_of;  // per field: index into nodes, or -1
  std::vector<Node> nodes;
  std::vector<std::unique_ptr<Graph>> children;
  std::map<std::string, Field> initializers;  // by name (the last one wins, as when ORT reads duplicates)
  std::set<std::string> runtime;              // graph inputs and node outputs: known only at run time
  std::vector<std::string> inputs, outputs;
  std::set<const uint8_t*> dropped;   // initializer fields left out (θ blobs no longer used)
  std::map<const uint8_t*, std::string> external;  // initializer fields with external data: location
  std::vector<int> jobs;             // tensors added to this graph
};

struct Job {
  std::string node, output;
  std::unique_ptr<Decoder> dec;
  const uint8_t* blob = nullptr;
  size_t blob_len = 0;
  std::vector<uint8_t> blob_store;  // θ read from external data or int32_data
  bool main = false, external = false;
  size_t offset = 0;  // in the external buffer
};

namespace {

bool fail(std::string* error, const std::string& message) {
  *error = message;
  return false;
}

std::string str(const Field& f) { return std::string(reinterpret_cast<const char*>(f.data), f.size); }

// Typed attribute access with ORT's rules: a getter of another type sees the attribute as absent.
class NodeAttrs : public AttrSource {
 public:
  std::map<std::string, std::string> strings;
  std::map<std::string, int64_t> ints;
  std::map<std::string, std::vector<int64_t>> int_lists;
  std::map<std::string, std::vector<float>> float_lists;

  bool get_string(const std::string& name, std::string* out) const override { return get(strings, name, out); }
  bool get_int(const std::string& name, int64_t* out) const override { return get(ints, name, out); }
  bool get_ints(const std::string& name, std::vector<int64_t>* out) const override {
    return get(int_lists, name, out);
  }
  bool get_floats(const std::string& name, std::vector<float>* out) const override {
    return get(float_lists, name, out);
  }

 private:
  template <class M, class T>
  static bool get(const M& m, const std::string& name, T* out) {
    auto it = m.find(name);
    if (it == m.end()) return false;
    *out = it->second;
    return true;
  }
};

float float_of(uint64_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits);
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

bool read_attribute(const Field& attr, NodeAttrs* out, std::string* error) {
  wire::Reader r(attr.data, attr.size);
  Field f;
  std::string name;
  uint64_t type = 0;
  std::string s;
  int64_t i = 0;
  std::vector<int64_t> ints;
  std::vector<float> floats;
  while (!r.done()) {
    if (!r.next(&f)) return fail(error, "malformed attribute");
    if (f.number == kAttrName && f.type == wire::kLen) name = str(f);
    else if (f.number == kAttrType && f.type == wire::kVarint) type = f.value;
    else if (f.number == kAttrS && f.type == wire::kLen) s = str(f);
    else if (f.number == kAttrI && f.type == wire::kVarint) i = static_cast<int64_t>(f.value);
    else if (f.number == kAttrInts && f.type == wire::kVarint) ints.push_back(static_cast<int64_t>(f.value));
    else if (f.number == kAttrInts && f.type == wire::kLen) {  // packed
      wire::Reader p(f.data, f.size);
      uint64_t v;
      while (!p.done()) {
        if (!p.varint(&v)) return fail(error, "malformed attribute");
        ints.push_back(static_cast<int64_t>(v));
      }
    } else if (f.number == kAttrFloats && f.type == wire::kFixed32) {
      floats.push_back(float_of(f.value));
    } else if (f.number == kAttrFloats && f.type == wire::kLen) {  // packed
      if (f.size % 4) return fail(error, "malformed attribute");
      for (size_t k = 0; k < f.size; k += 4) {
        uint32_t u;
        std::memcpy(&u, f.data + k, 4);
        floats.push_back(float_of(u));
      }
    }
  }
  switch (type) {
    case kAttrTypeString: out->strings[name] = s; break;
    case kAttrTypeInt: out->ints[name] = i; break;
    case kAttrTypeInts: out->int_lists[name] = ints; break;
    case kAttrTypeFloats: out->float_lists[name] = floats; break;
    default: break;  // FLOAT and other types: the decoder reads none (ORT's FLOATS getter ignores FLOAT too)
  }
  return true;
}

}  // namespace

bool safe_relative(const std::string& location) {
  if (location.empty() || location[0] == '/' || location.find('\0') != std::string::npos) return false;
  size_t start = 0;
  while (start <= location.size()) {
    size_t end = location.find('/', start);
    if (end == std::string::npos) end = location.size();
    if (location.compare(start, end - start, "..") == 0 && end - start == 2) return false;
    start = end + 1;
  }
  return true;
}

namespace {

// Reads the bytes of a θ blob stored as external data (location relative to base_dir, offset, length).
bool read_external(const std::map<std::string, std::string>& entries, const std::string& tensor,
                   const std::string& base_dir, std::vector<uint8_t>* out, std::string* error) {
  auto get = [&](const char* key) -> const std::string* {
    auto it = entries.find(key);
    return it == entries.end() ? nullptr : &it->second;
  };
  const std::string* location = get("location");
  if (!location) return fail(error, "initializer '" + tensor + "' has external data without a location");
  if (!safe_relative(*location))
    return fail(error, "initializer '" + tensor + "': external data location '" + *location +
                           "' must be a relative path inside the model's folder");
  if (base_dir.empty())
    return fail(error, "initializer '" + tensor + "' has external data ('" + *location +
                           "') but the model was given as bytes without a folder for its external data");
  auto number = [&](const char* key, uint64_t* v) {
    const std::string* s = get(key);
    if (!s) return true;
    if (s->empty() || s->size() > 19 || s->find_first_not_of("0123456789") != std::string::npos) return false;
    *v = std::stoull(*s);
    return true;
  };
  uint64_t offset = 0, length = UINT64_MAX;
  if (!number("offset", &offset) || !number("length", &length))
    return fail(error, "initializer '" + tensor + "': bad external data offset or length");
  const std::string path = base_dir + "/" + *location;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(error, "initializer '" + tensor + "': cannot open external data file '" + path + "'");
  struct stat st;
  bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  const uint64_t size = ok ? static_cast<uint64_t>(st.st_size) : 0;
  if (length == UINT64_MAX && offset <= size) length = size - offset;
  ok = ok && offset <= size && length <= size - offset;
  if (ok) {
    out->resize(static_cast<size_t>(length));
    size_t done = 0;
    while (ok && done < out->size()) {
      const ssize_t n = ::pread(fd, out->data() + done, out->size() - done, static_cast<off_t>(offset + done));
      ok = n > 0;
      if (ok) done += static_cast<size_t>(n);
    }
  }
  ::close(fd);
  if (!ok)
    return fail(error, "initializer '" + tensor + "': external data file '" + path + "' is shorter than offset " +
                           std::to_string(offset) + " + length " + std::to_string(length) + " or unreadable");
  return true;
}

// Copies a θ initializer's bytes (raw_data, int32_data or external data) into a job, checking type and size.
bool read_blob(const Field& init, const std::string& base_dir, Job* job, std::string* error) {
  wire::Reader r(init.data, init.size);
  Field f;
  std::string name;
  int64_t type = 0;
  uint64_t numel = 1;
  bool has_raw = false, external = false, has_int32 = false;
  std::map<std::string, std::string> entries;
  std::vector<uint8_t> int32_bytes;
  while (!r.done()) {
    if (!r.next(&f)) return fail(error, "malformed initializer");
    if (f.number == kTensorName && f.type == wire::kLen) name = str(f);
    else if (f.number == kTensorDataType && f.type == wire::kVarint) type = static_cast<int64_t>(f.value);
    else if (f.number == kTensorDims && (f.type == wire::kVarint || f.type == wire::kLen)) {
      std::vector<uint64_t> dims;
      if (f.type == wire::kVarint) {
        dims.push_back(f.value);
      } else {
        wire::Reader q(f.data, f.size);
        uint64_t v;
        while (!q.done()) {
          if (!q.varint(&v)) return fail(error, "malformed initializer dims");
          dims.push_back(v);
        }
      }
      for (uint64_t d : dims) {
        if (static_cast<int64_t>(d) < 0 || (d && numel > (uint64_t{1} << 62) / d))
          return fail(error, "initializer '" + name + "' has bad dims");
        numel *= d;
      }
    } else if (f.number == kTensorRawData && f.type == wire::kLen) {
      has_raw = true;
      job->blob = f.data;
      job->blob_len = f.size;
    } else if (f.number == kTensorDataLocation && f.type == wire::kVarint) {
      external = f.value == 1;
    } else if (f.number == kTensorExternalData && f.type == wire::kLen) {
      wire::Reader e(f.data, f.size);
      Field g;
      std::string key, value;
      while (!e.done()) {
        if (!e.next(&g)) return fail(error, "malformed external data entry");
        if (g.number == kEntryKey && g.type == wire::kLen) key = str(g);
        if (g.number == kEntryValue && g.type == wire::kLen) value = str(g);
      }
      entries[key] = value;
    } else if (f.number == kTensorInt32Data && (f.type == wire::kVarint || f.type == wire::kLen)) {
      has_int32 = true;  // uint8 tensors without raw_data keep their values here, one per varint
      std::vector<uint64_t> values;
      if (f.type == wire::kVarint) values.push_back(f.value);
      wire::Reader q(f.type == wire::kLen ? f.data : f.begin, f.type == wire::kLen ? f.size : 0);
      uint64_t v;
      while (!q.done()) {
        if (!q.varint(&v)) return fail(error, "malformed initializer");
        values.push_back(v);
      }
      for (uint64_t value : values) {
        if (value > 255) return fail(error, "initializer '" + name + "': uint8 value out of range");
        int32_bytes.push_back(static_cast<uint8_t>(value));
      }
    }
  }
  if (type != kUint8) return fail(error, "input 0 (the theta blob) must be a uint8 tensor");
  if (external) {
    if (!read_external(entries, name, base_dir, &job->blob_store, error)) return false;
    job->blob = job->blob_store.data();
    job->blob_len = job->blob_store.size();
  } else if (!has_raw && has_int32) {
    job->blob_store = std::move(int32_bytes);
    job->blob = job->blob_store.data();
    job->blob_len = job->blob_store.size();
  } else if (!has_raw) {
    job->blob = nullptr;
    job->blob_len = 0;
  }
  if (job->blob_len != numel)
    return fail(error, "initializer '" + name + "' holds " + std::to_string(job->blob_len) +
                           " bytes but its dims say " + std::to_string(numel));
  return true;
}

bool parse_graph(const uint8_t* data, size_t size, Graph* g, std::string* error);

bool parse_node(const Field& field, Graph* g, Node* node, std::string* error) {
  wire::Reader r(field.data, field.size);
  Field f;
  while (!r.done()) {
    if (!r.next(&f)) return fail(error, "malformed node");
    if (f.type != wire::kLen) continue;
    switch (f.number) {
      case kNodeInput: node->inputs.push_back(str(f)); break;
      case kNodeOutput: node->outputs.push_back(str(f)); break;
      case kNodeName: node->name = str(f); break;
      case kNodeOpType: node->op_type = str(f); break;
      case kNodeDomain: node->domain = str(f); break;
      case kNodeAttribute: {
        node->attributes.push_back(f);
        wire::Reader a(f.data, f.size);
        Field af;
        while (!a.done()) {
          if (!a.next(&af)) return fail(error, "malformed attribute");
          if ((af.number == kAttrG || af.number == kAttrGraphs) && af.type == wire::kLen) {
            if (g->depth + 1 > kMaxDepth) return fail(error, "subgraphs nested too deeply");
            auto child = std::make_unique<Graph>();
            child->parent = g;
            child->depth = g->depth + 1;
            if (!parse_graph(af.data, af.size, child.get(), error)) return false;
            node->subgraphs.emplace_back(af.data, child.get());
            g->children.push_back(std::move(child));
          }
        }
        break;
      }
      default: break;
    }
  }
  return true;
}

bool value_info_name(const Field& f, std::string* name) {
  wire::Reader r(f.data, f.size);
  Field v;
  while (!r.done()) {
    if (!r.next(&v)) return false;
    if (v.number == 1 && v.type == wire::kLen) *name = str(v);
  }
  return true;
}

// The tensor's name; for external data also its location (else `location` stays empty).
bool tensor_name(const Field& f, std::string* name, std::string* location) {
  wire::Reader r(f.data, f.size);
  Field v;
  bool external = false;
  while (!r.done()) {
    if (!r.next(&v)) return false;
    if (v.number == kTensorName && v.type == wire::kLen) *name = str(v);
    if (v.number == kTensorDataLocation && v.type == wire::kVarint && v.value == 1) external = true;
    if (v.number == kTensorExternalData && v.type == wire::kLen) {
      wire::Reader e(v.data, v.size);
      Field g;
      std::string key, value;
      while (!e.done()) {
        if (!e.next(&g)) return false;
        if (g.number == kEntryKey && g.type == wire::kLen) key = str(g);
        if (g.number == kEntryValue && g.type == wire::kLen) value = str(g);
      }
      if (key == "location") *location = value;
    }
  }
  if (!external) location->clear();
  else if (location->empty()) *location = "?";  // ORT reports it
  return true;
}

bool parse_graph(const uint8_t* data, size_t size, Graph* g, std::string* error) {
  wire::Reader r(data, size);
  Field f;
  while (!r.done()) {
    if (!r.next(&f)) return fail(error, "not an ONNX model (malformed graph)");
    g->fields.push_back(f);
    g->node_of.push_back(-1);
    if (f.type != wire::kLen) continue;
    std::string name;
    if (f.number == kGraphNode) {
      Node node;
      node.field = g->fields.size() - 1;
      if (!parse_node(f, g, &node, error)) return false;
      g->node_of.back() = static_cast<int>(g->nodes.size());
      for (const std::string& o : node.outputs) g->runtime.insert(o);
      g->nodes.push_back(std::move(node));
    } else if (f.number == kGraphInitializer) {
      std::string location;
      if (!tensor_name(f, &name, &location)) return fail(error, "not an ONNX model (malformed initializer)");
      g->initializers[name] = f;
      if (!location.empty()) g->external[f.begin] = location;
    } else if (f.number == kGraphInput || f.number == kGraphOutput) {
      if (!value_info_name(f, &name)) return fail(error, "not an ONNX model (malformed graph input/output)");
      if (f.number == kGraphInput) g->inputs.push_back(name);
      else g->outputs.push_back(name);
    }
  }
  return true;
}

// The θ initializer a node input names, searching enclosing graphs; null when the value is a graph input
// (overridable at run time), a node output, or unknown.
const Field* resolve(const Graph* g, const std::string& name) {
  for (; g; g = g->parent) {
    if (g->runtime.count(name)) return nullptr;
    auto it = g->initializers.find(name);
    if (it != g->initializers.end()) return &it->second;
  }
  return nullptr;
}

Graph* owner_of(Graph* g, const std::string& name) {
  for (; g; g = g->parent) {
    if (g->runtime.count(name)) return nullptr;
    if (g->initializers.count(name)) return g;
  }
  return nullptr;
}

template <class F>
void each_graph(Graph* g, const F& fn) {
  fn(g);
  for (auto& c : g->children) each_graph(c.get(), fn);
}

class Out {
 public:
  explicit Out(std::deque<std::string>* owned) : owned_(owned) {}
  void copy(const uint8_t* p, size_t n) {
    if (n) pieces.push_back({p, n, -1});
    size += n;
  }
  void bytes(std::string s) {
    owned_->push_back(std::move(s));
    copy(reinterpret_cast<const uint8_t*>(owned_->back().data()), owned_->back().size());
  }
  void decoded(int job, size_t n) {
    pieces.push_back({nullptr, n, job});
    size += n;
  }
  void message(uint32_t number, Out&& child) {
    std::string h;
    wire::put_tag(&h, number, wire::kLen);
    wire::put_varint(&h, child.size);
    bytes(std::move(h));
    pieces.insert(pieces.end(), child.pieces.begin(), child.pieces.end());
    size += child.size;
  }
  std::vector<Piece> pieces;
  uint64_t size = 0;

 private:
  std::deque<std::string>* owned_;
};

}  // namespace

Plan::Plan() = default;
Plan::~Plan() = default;

size_t Plan::decoded_count() const { return jobs_.size(); }

size_t Plan::decoded_bytes() const {
  size_t n = 0;
  for (const auto& j : jobs_) n += j->dec->out_bytes();
  return n;
}

namespace {

Out emit_graph(const Graph& g, const std::vector<std::unique_ptr<Job>>& jobs, std::deque<std::string>* owned);

Out emit_node(const Node& n, const Field& field, const std::vector<std::unique_ptr<Job>>& jobs,
              std::deque<std::string>* owned) {
  Out out(owned);
  wire::Reader r(field.data, field.size);
  Field f;
  while (!r.done() && r.next(&f)) {  // parsed once already: cannot fail
    if (f.number != kNodeAttribute || f.type != wire::kLen) {
      out.copy(f.begin, static_cast<size_t>(f.end - f.begin));
      continue;
    }
    Out attr(owned);
    wire::Reader a(f.data, f.size);
    Field af;
    while (!a.done() && a.next(&af)) {
      const Graph* sub = nullptr;
      if ((af.number == kAttrG || af.number == kAttrGraphs) && af.type == wire::kLen) {
        for (const auto& s : n.subgraphs)
          if (s.first == af.data) sub = s.second;
      }
      if (sub) attr.message(af.number, emit_graph(*sub, jobs, owned));
      else attr.copy(af.begin, static_cast<size_t>(af.end - af.begin));
    }
    out.message(kNodeAttribute, std::move(attr));
  }
  return out;
}

Out emit_tensor(const Job& job, std::deque<std::string>* owned) {
  Out t(owned);
  std::string h;
  for (int64_t d : job.dec->shape()) {
    wire::put_tag(&h, kTensorDims, wire::kVarint);
    wire::put_varint(&h, static_cast<uint64_t>(d));
  }
  wire::put_tag(&h, kTensorDataType, wire::kVarint);
  wire::put_varint(&h, static_cast<uint64_t>(job.dec->dtype()));
  wire::put_bytes(&h, kTensorName, job.output);
  const size_t n = job.dec->out_bytes();
  if (!job.external) {
    wire::put_tag(&h, kTensorRawData, wire::kLen);
    wire::put_varint(&h, n);
    t.bytes(std::move(h));
    t.decoded(-1, n);  // the caller sets the job index
    return t;
  }
  const std::pair<const char*, std::string> entries[] = {
      {"location", kExternalName}, {"offset", std::to_string(job.offset)}, {"length", std::to_string(n)}};
  for (const auto& e : entries) {
    std::string entry;
    wire::put_bytes(&entry, kEntryKey, e.first);
    wire::put_bytes(&entry, kEntryValue, e.second);
    wire::put_bytes(&h, kTensorExternalData, entry);
  }
  wire::put_tag(&h, kTensorDataLocation, wire::kVarint);
  wire::put_varint(&h, 1);  // EXTERNAL
  t.bytes(std::move(h));
  return t;
}

Out emit_graph(const Graph& g, const std::vector<std::unique_ptr<Job>>& jobs, std::deque<std::string>* owned) {
  Out out(owned);
  for (size_t i = 0; i < g.fields.size(); ++i) {
    const Field& f = g.fields[i];
    const int ni = g.node_of[i];
    if (ni >= 0) {
      const Node& n = g.nodes[static_cast<size_t>(ni)];
      if (n.job >= 0) continue;  // replaced by an initializer
      if (!n.subgraphs.empty()) {
        out.message(kGraphNode, emit_node(n, f, jobs, owned));
        continue;
      }
    } else if (f.number == kGraphInitializer && g.dropped.count(f.begin)) {
      continue;
    }
    out.copy(f.begin, static_cast<size_t>(f.end - f.begin));
  }
  for (int j : g.jobs) {
    Out t = emit_tensor(*jobs[static_cast<size_t>(j)], owned);
    for (Piece& p : t.pieces)
      if (!p.p) p.job = j;
    out.message(kGraphInitializer, std::move(t));
  }
  return out;
}

}  // namespace

std::unique_ptr<Plan> Plan::create(const uint8_t* data, size_t size, const Options& options, std::string* error) {
  std::unique_ptr<Plan> plan(new Plan());
  plan->data_ = data;
  plan->size_ = size;
  plan->options_ = options;

  // The model: exactly one graph field; everything else is copied.
  wire::Reader r(data, size);
  Field f;
  const Field* graph_field = nullptr;
  std::vector<Field> fields;
  while (!r.done()) {
    if (!r.next(&f)) return fail(error, "not an ONNX model (malformed protobuf)"), nullptr;
    fields.push_back(f);
  }
  for (const Field& m : fields) {
    if (m.number == kModelGraph) {
      if (m.type != wire::kLen || graph_field) return fail(error, "not an ONNX model (bad graph field)"), nullptr;
      graph_field = &m;
    }
  }
  if (!graph_field) return fail(error, "not an ONNX model (no graph)"), nullptr;
  plan->graph_ = std::make_unique<Graph>();
  if (!parse_graph(graph_field->data, graph_field->size, plan->graph_.get(), error)) return nullptr;
  // Graph inputs are run-time values, except that below IR version 4 every initializer is also listed as an
  // input and ORT still treats it as a constant.
  uint64_t ir_version = 0;
  for (const Field& m : fields)
    if (m.number == kModelIrVersion && m.type == wire::kVarint) ir_version = m.value;
  each_graph(plan->graph_.get(), [&](Graph* g) {
    for (const std::string& name : g->inputs)
      if (g->parent || ir_version >= 4 || !g->initializers.count(name)) g->runtime.insert(name);
  });

  // Which nodes to replace.
  bool failed = false;
  each_graph(plan->graph_.get(), [&](Graph* g) {
    for (Node& n : g->nodes) {
      if (failed || n.domain != kDomainName || n.op_type != kOpName) continue;
      if (n.inputs.empty() || n.outputs.size() != 1 || n.outputs[0].empty()) continue;  // ORT reports these
      const Field* init = resolve(g, n.inputs[0]);
      if (!init) continue;  // fed at run time: stays a kernel
      const std::string label = "HyperDecode node '" + (n.name.empty() ? std::string("<unnamed>") : n.name) + "': ";
      NodeAttrs attrs;
      for (const Field& a : n.attributes) {
        if (!read_attribute(a, &attrs, error)) {
          *error = label + *error;
          failed = true;
        }
      }
      if (failed) break;
      auto job = std::make_unique<Job>();
      job->dec = Decoder::create(attrs, error);
      if (!job->dec) {
        *error = label + *error;
        failed = true;
        break;
      }
      if (job->dec->mode() == Mode::kCall && !options.decode_call_nodes) continue;
      if (!read_blob(*init, options.base_dir, job.get(), error) || !job->dec->check_length(job->blob_len, error)) {
        *error = label + *error;
        failed = true;
        break;
      }
      job->node = n.name;
      job->output = n.outputs[0];
      job->main = g->parent == nullptr;
      n.job = static_cast<int>(plan->jobs_.size());
      g->jobs.push_back(n.job);
      plan->jobs_.push_back(std::move(job));
    }
  });
  if (failed) return nullptr;

  // θ initializers nothing reads any more are left out; other ai.hyperonnx nodes keep the domain's opset.
  std::set<std::string> used;
  std::vector<std::pair<Graph*, std::string>> thetas;
  each_graph(plan->graph_.get(), [&](Graph* g) {
    for (const std::string& o : g->outputs) used.insert(o);
    for (const Node& n : g->nodes) {
      if (n.job >= 0) {
        thetas.emplace_back(g, n.inputs[0]);
        continue;
      }
      if (n.domain == kDomainName) plan->ops_remain_ = true;
      for (const std::string& i : n.inputs) used.insert(i);
    }
  });
  for (const auto& t : thetas) {
    if (used.count(t.second)) continue;
    if (Graph* owner = owner_of(t.first, t.second)) owner->dropped.insert(owner->initializers[t.second].begin);
  }
  plan->keep_domain_ = plan->ops_remain_;
  each_graph(plan->graph_.get(), [&](Graph* g) {
    for (const auto& e : g->external) {
      if (g->dropped.count(e.first)) continue;
      ++plan->external_refs_;
      if (std::find(plan->locations_.begin(), plan->locations_.end(), e.second) == plan->locations_.end())
        plan->locations_.push_back(e.second);
    }
  });
  plan->model_fields_ = std::move(fields);
  if (!plan->layout(false, error)) return nullptr;
  return plan;
}

bool Plan::layout(bool externalize, std::string* error) {
  pieces_.clear();
  owned_.clear();
  external_bytes_ = 0;
  for (auto& j : jobs_) {
    j->external = externalize && j->main;
    if (j->external) {
      j->offset = external_bytes_;
      external_bytes_ += (j->dec->out_bytes() + kExternalAlign - 1) / kExternalAlign * kExternalAlign;
    }
  }
  Out out(&owned_);
  for (const Field& m : model_fields_) {
    if (m.number == kModelGraph) {
      out.message(kModelGraph, emit_graph(*graph_, jobs_, &owned_));
      continue;
    }
    if (m.number == kModelOpset && m.type == wire::kLen && !keep_domain_) {
      wire::Reader r(m.data, m.size);
      Field f;
      std::string domain;
      while (!r.done() && r.next(&f))
        if (f.number == kOpsetDomain && f.type == wire::kLen) domain = str(f);
      if (domain == kDomainName) continue;
    }
    out.copy(m.begin, static_cast<size_t>(m.end - m.begin));
  }
  pieces_ = std::move(out.pieces);
  model_bytes_ = static_cast<size_t>(out.size);
  if (model_bytes_ > options_.inline_limit) {
    if (externalize)
      return fail(error, "the model is too large for protobuf (" + std::to_string(model_bytes_) +
                             " bytes) even with its decoded weights kept outside it");
    return layout(true, error);
  }
  return true;
}

bool Plan::write(uint8_t* model, uint8_t* external, std::string* error) const {
  std::vector<uint8_t*> dest(jobs_.size(), nullptr);
  uint8_t* p = model;
  for (const Piece& piece : pieces_) {
    if (piece.p) std::memcpy(p, piece.p, piece.n);
    else dest[static_cast<size_t>(piece.job)] = p;
    p += piece.n;
  }
  for (size_t j = 0; j < jobs_.size(); ++j) {
    if (jobs_[j]->external) {
      if (!external) return fail(error, "no buffer for the external decoded tensors");
      dest[j] = external + jobs_[j]->offset;
    }
  }
  const int threads = options_.threads > 0 ? options_.threads : default_decode_threads();
  // Inline tensors start wherever the protobuf layout puts them; a misaligned one is decoded into an aligned
  // scratch buffer and copied (the codecs store whole elements). One mapping for all of them, reused: freed
  // mappings go back to the system at once, where malloc'ed scratch stayed resident in the heap (measured: +6 MiB
  // RSS after loading MobileNetV2), and a mapping per tensor costs a syscall pair and page faults each (+50 ms).
  size_t scratch_bytes = 0;
  for (size_t j = 0; j < jobs_.size(); ++j)
    if (reinterpret_cast<uintptr_t>(dest[j]) % 16 != 0) scratch_bytes = std::max(scratch_bytes, jobs_[j]->dec->out_bytes());
  Buffer scratch;
  if (!scratch.allocate(scratch_bytes)) return fail(error, "out of memory (" + std::to_string(scratch_bytes) + " bytes)");
  std::string first_error;
  // One tensor at a time, each with every thread when it is large (kParallelMinElements): small tensors decode
  // in well under a millisecond, so spreading them over threads saved little and cost a scratch per thread.
  for (size_t j = 0; j < jobs_.size() && first_error.empty(); ++j) {
    const Job& job = *jobs_[j];
    const size_t n = job.dec->out_bytes();
    const bool aligned = reinterpret_cast<uintptr_t>(dest[j]) % 16 == 0 || n == 0;
    const int t = job.dec->numel() >= kParallelMinElements ? threads : 1;
    std::string err;
    bool ok = job.dec->decode(job.blob, job.blob_len, aligned ? dest[j] : scratch.data(), t, &err);
    if (ok && !aligned) std::memcpy(dest[j], scratch.data(), n);
    if (!ok) first_error = "HyperDecode node '" + (job.node.empty() ? std::string("<unnamed>") : job.node) + "': " + err;
  }
  if (!first_error.empty()) return fail(error, first_error);
  return true;
}

}  // namespace fast
}  // namespace hyperonnx
