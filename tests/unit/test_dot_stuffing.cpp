#include "mta/delivery/dot_stuffing.h"

#include <gtest/gtest.h>

#include <string>

namespace tern::delivery {
namespace {

std::string stuff(std::string_view content, size_t piece) {
  DotStuffer stuffer(content);
  std::string out;
  size_t calls = 0;
  while (!stuffer.done()) {
    stuffer.next(&out, piece);
    EXPECT_LE(++calls, content.size() + 1) << "the stuffer does not advance";
    if (calls > content.size() + 1) break;
  }
  return out;
}

TEST(DotStuffing, LinesStartingWithADotGetAnotherOne) {
  EXPECT_EQ(stuff(".\r\n..\r\n.x\r\nno.dot\r\n", 1 << 20), "..\r\n...\r\n..x\r\nno.dot\r\n.\r\n");
}

TEST(DotStuffing, TheFirstLineCountsAsALineStart) {
  EXPECT_EQ(stuff(".hidden\r\n", 64), "..hidden\r\n.\r\n");
}

TEST(DotStuffing, ADotInsideALineIsLeftAlone) {
  EXPECT_EQ(stuff("a.b\r\nc .\r\n", 64), "a.b\r\nc .\r\n.\r\n");
}

TEST(DotStuffing, ADotAfterABareLineFeedIsStuffed) {
  // A lenient receiver takes a bare LF as a line end: "\n.\r\n" must not end the data there.
  EXPECT_EQ(stuff("a\n.\r\n", 64), "a\n..\r\n.\r\n");
}

TEST(DotStuffing, ContentWithoutAFinalLineEndGetsOne) {
  EXPECT_EQ(stuff("last line", 64), "last line\r\n.\r\n");
  EXPECT_EQ(stuff("a\r\n.", 64), "a\r\n..\r\n.\r\n");
}

TEST(DotStuffing, EmptyContentIsJustTheEnd) { EXPECT_EQ(stuff("", 64), ".\r\n"); }

TEST(DotStuffing, EveryPieceSizeGivesTheSameBytes) {
  const std::string content = ".a\r\n\r\n..b\r\nc.\r\n.\r\nd\n.e\r\n.";
  const std::string whole = stuff(content, content.size());
  EXPECT_EQ(whole, "..a\r\n\r\n...b\r\nc.\r\n..\r\nd\n..e\r\n..\r\n.\r\n");
  for (size_t piece = 0; piece <= content.size() + 1; ++piece) EXPECT_EQ(stuff(content, piece), whole) << piece;
}

TEST(DotStuffing, PiecesAreBoundedByTheInputTheyTake) {
  const std::string content(1000, 'x');
  DotStuffer stuffer(content);
  std::string piece;
  stuffer.next(&piece, 100);
  EXPECT_EQ(piece.size(), 100u);
  EXPECT_FALSE(stuffer.done());
}

TEST(DotStuffing, NothingMoreOnceDone) {
  DotStuffer stuffer("a\r\n");
  std::string out;
  stuffer.next(&out, 64);
  ASSERT_TRUE(stuffer.done());
  stuffer.next(&out, 64);
  EXPECT_EQ(out, "a\r\n.\r\n");
}

}  // namespace
}  // namespace tern::delivery
