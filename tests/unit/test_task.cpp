// io::Task: values and continuations, and a stack that does not grow with the
// number of awaits that complete without suspending (pipelined commands).
#include "mta/io/task.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace tern::io {
namespace {

// A child that never suspends; it reports how deep on the machine stack it
// runs (its locals live in the coroutine frame on the heap, so the frame
// address of the function running its body is what tells).
Task<int> immediate(int value, uintptr_t* stack_mark) {
  *stack_mark = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  co_return value;
}

Task<void> await_many(int count, int64_t* sum, uintptr_t* first_mark, uintptr_t* last_mark) {
  for (int i = 0; i < count; ++i) {
    uintptr_t mark = 0;
    *sum += co_await immediate(i, &mark);
    if (i == 0) *first_mark = mark;
    *last_mark = mark;
  }
}

TEST(Task, StackStaysFlatAcrossAwaitsThatCompleteAtOnce) {
  int64_t sum = 0;
  uintptr_t first = 0;
  uintptr_t last = 0;
  constexpr int kAwaits = 100'000;
  spawn(await_many(kAwaits, &sum, &first, &last));
  EXPECT_EQ(sum, int64_t{kAwaits} * (kAwaits - 1) / 2);
  // Without the inline-completion path each await nested one more frame:
  // 100,000 of them overflow an unoptimised or sanitizer build's stack, and
  // the last child would run far below the first.
  EXPECT_EQ(first, last);
}

// An awaitable resumed from outside, as a loop completion would be.
struct Gate {
  std::coroutine_handle<> waiter;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) noexcept { waiter = h; }
  void await_resume() const noexcept {}
};

Task<int> after_gate(Gate& gate, int value) {
  co_await gate;
  co_return value * 2;
}

Task<int> middle(Gate& gate, std::vector<int>* trace) {
  trace->push_back(1);
  int v = co_await after_gate(gate, 21);
  trace->push_back(2);
  uintptr_t ignored = 0;
  v += co_await immediate(0, &ignored);  // inline completion after a suspension
  co_return v;
}

Task<void> outer(Gate& gate, std::vector<int>* trace, int* result) {
  *result = co_await middle(gate, trace);
  trace->push_back(3);
}

TEST(Task, SuspendedChildResumesItsAwaiterWhenItEnds) {
  Gate gate;
  std::vector<int> trace;
  int result = 0;
  spawn(outer(gate, &trace, &result));
  EXPECT_EQ(trace, std::vector<int>{1});
  ASSERT_TRUE(gate.waiter);
  gate.waiter.resume();
  EXPECT_EQ(trace, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(result, 42);
}

Task<void> suspend_then_await_many(Gate& gate, int64_t* sum, uintptr_t* first, uintptr_t* last) {
  co_await gate;
  co_await await_many(10'000, sum, first, last);
}

TEST(Task, StackStaysFlatAfterAResumeFromOutside) {
  Gate gate;
  int64_t sum = 0;
  uintptr_t first = 0;
  uintptr_t last = 0;
  spawn(suspend_then_await_many(gate, &sum, &first, &last));
  EXPECT_EQ(sum, 0);
  gate.waiter.resume();
  EXPECT_EQ(sum, int64_t{10'000} * 9'999 / 2);
  EXPECT_EQ(first, last);
}

}  // namespace
}  // namespace tern::io
