// A run-time code width (or batch size) to the compile-time one that the SIMD kernels are templates on: the
// blocktcq kernels (tcq_rows.cc, tcq_vbmi.cc, tcq_neon.cc) pick their instance with it, in place of one switch per
// kernel and family.
#pragma once

#include <type_traits>
#include <utility>

namespace hyperonnx {

namespace code_widths_detail {

template <int Lo, class R, class Make, int... I>
R pick(int n, Make& make, std::integer_sequence<int, I...>) {
  R r{};
  (void)((n == Lo + I && (r = make(std::integral_constant<int, Lo + I>{}), true)) || ...);
  return r;
}

}  // namespace code_widths_detail

// make(std::integral_constant<int, n>{}) for n in [Lo, Hi]; outside it, the result type's value-initialized
// fallback (null for a function pointer). Every instance's result converts to the one for Lo.
template <int Lo, int Hi, class Make>
auto for_bits(int n, Make make) {
  static_assert(Lo <= Hi, "an empty range");
  using R = decltype(make(std::integral_constant<int, Lo>{}));
  return code_widths_detail::pick<Lo, R>(n, make, std::make_integer_sequence<int, Hi - Lo + 1>{});
}

}  // namespace hyperonnx
