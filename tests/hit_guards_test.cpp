#include <llmfast/hit_guards.hpp>

#include "catch.hpp"

TEST_CASE("guard signatures", "[cache]") {
    using llmfast::GuardVeto;
    const llmfast::HitGuards all{};
    const auto veto = [&](std::string_view a, std::string_view b) {
        return llmfast::check_hit_guards(llmfast::make_guard_signature(a), llmfast::make_guard_signature(b), all);
    };
    CHECK(veto("I have 1,000 apples", "I have 1000 apples") == GuardVeto::None);
    CHECK(veto("I have two apples", "I have 2 apples") == GuardVeto::None);
    CHECK(veto("3.5 kg", "3.6 kg") == GuardVeto::Numbers);
    CHECK(veto("我有一个苹果", "我有一些苹果") == GuardVeto::None);  // 一 as an article is not a number
    CHECK(veto("第一章", "第二章") == GuardVeto::Numbers);
    CHECK(veto("这个问题很难", "这个问题不难") == GuardVeto::Negation);
    CHECK(veto("这个问题非常难", "这个问题很难") == GuardVeto::None);  // 非常 = very
    CHECK(veto("I can't swim", "I can swim") == GuardVeto::Negation);
    CHECK(veto("Shawnee Trails 委员会", "Audubon 委员会") == GuardVeto::LatinNames);
    CHECK(veto("The man met John", "the man met John") == GuardVeto::None);  // sentence start is not a name
    CHECK(veto("A 比 B 大", "B 比 A 大") == GuardVeto::TermOrder);
    CHECK(llmfast::check_hit_guards(llmfast::make_guard_signature("A 比 B 大"), llmfast::make_guard_signature("B 比 A 大"),
                                    {.term_order = false}) == GuardVeto::None);
}
