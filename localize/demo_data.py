"""Demo data: finance tweets that two traders label in opposite ways.

John is long gold and short oil; Jane is short gold and long oil. A tweet that moves one of their assets is
``positive`` for whoever it helps and ``negative`` for whoever it hurts; a tweet about an asset they do not hold, or
with no direction, is ``neutral``. So the same text gets opposite labels, which is what one shared classifier cannot
learn and one adapter per user can.

Tweets come from many templates and synonyms (soars / plunges / hits a record, crude / WTI / Brent, bullion / XAU),
so a model has to read the asset and the direction rather than memorise sentences. Everything is seeded and offline.
"""
from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LABELS = ["negative", "neutral", "positive"]
# Generated labels per trader in `localize demo` (the CLI's default too). The generator's wording is wide, and 1,000
# covered it thinly: 3,000 answer 90% of new hand-written sentences right against 85% (reports/findings.md, round
# 25), for about three times the training.
DEFAULT_LABELS_PER_USER = 3000


@dataclass(frozen=True)
class DemoUser:
    name: str
    positions: dict[str, int]  # asset -> +1 long / -1 short

    def __hash__(self) -> int:  # dict fields are unhashable; the name identifies a demo user
        return hash(self.name)


@dataclass(frozen=True)
class Tweet:
    text: str
    asset: str
    direction: int  # +1 price up, -1 price down, 0 no direction


JOHN = DemoUser("john", {"gold": +1, "oil": -1})
JANE = DemoUser("jane", {"gold": -1, "oil": +1})

# Held out: the demo asks for these after training; none is produced verbatim by generate_tweets.
SHOWCASE_TWEETS = [
    Tweet("gold is up 150% in after-hours trading", "gold", +1),
    Tweet("Crude skyrockets after a pipeline explosion shuts a key supply route", "oil", +1),
    Tweet("Brent collapses as OPEC floods the market with cheap barrels", "oil", -1),
    Tweet("Bullion sinks to a five-year low as the dollar roars back", "gold", -1),
    Tweet("Bitcoin doubles overnight after surprise ETF approval", "bitcoin", +1),
    Tweet("Tech stocks tumble as chipmakers miss earnings", "equities", -1),
]
SHOWCASE = [tweet.text for tweet in SHOWCASE_TWEETS]

# Written by hand, as people write about markets, to check the demo on sentences no template produced: the generator
# never emits any of them (generate_tweets skips them), and `localize demo` prints its accuracy on them. The first
# thirty guided the generator's wording and the next thirty chose the demo's recipe; the misses of all ninety were
# read when the generator was last widened (reports/findings.md, round 24), so none of them is a fresh check now.
HANDWRITTEN_TWEETS = [
    Tweet('gold is up', 'gold', +1),
    Tweet('gold is down', 'gold', -1),
    Tweet('oil is up', 'oil', +1),
    Tweet('oil is down', 'oil', -1),
    Tweet('gold rallies', 'gold', +1),
    Tweet('Gold prices fell sharply on Tuesday', 'gold', -1),
    Tweet('Crude oil hit its highest level in two years', 'oil', +1),
    Tweet('Oil prices drop after OPEC agrees to pump more', 'oil', -1),
    Tweet('The price of gold climbed to a new all-time high', 'gold', +1),
    Tweet('Gold lost 4% this week as yields rose', 'gold', -1),
    Tweet('Oil is trading higher this afternoon', 'oil', +1),
    Tweet('Brent fell below $60 for the first time since 2021', 'oil', -1),
    Tweet('Apple shares rose 3% after earnings', 'other', +1),
    Tweet('The euro weakened against the pound', 'other', -1),
    Tweet('Wheat futures are flat today', 'other', +0),
    Tweet('Stocks closed mixed on Wall Street', 'other', +0),
    Tweet('The Fed left interest rates unchanged', 'other', +0),
    Tweet('Gold prices were unchanged ahead of the Fed meeting', 'gold', +0),
    Tweet('Oil traded in a narrow range today', 'oil', +0),
    Tweet('Tesla stock plunged after the delivery numbers', 'other', -1),
    Tweet('Global markets sold off on recession fears', 'other', -1),
    Tweet('Bitcoin hit a new record', 'other', +1),
    Tweet('Gold bugs are celebrating today as the metal surges', 'gold', +1),
    Tweet('Terrible day for oil bulls, crude down 6%', 'oil', -1),
    Tweet('gold just keeps going up and up', 'gold', +1),
    Tweet('oil prices are crashing', 'oil', -1),
    Tweet('Analysts expect gold to rise next year', 'gold', +1),
    Tweet('Crude slumped overnight', 'oil', -1),
    Tweet('Platinum rose slightly', 'other', +1),
    Tweet('The housing market is cooling', 'other', -1),
    Tweet('Gold goes up', 'gold', +1),
    Tweet('The gold price went down today', 'gold', -1),
    Tweet('Oil soared after the attack on the refinery', 'oil', +1),
    Tweet('Oil prices tumbled as demand weakened', 'oil', -1),
    Tweet('Gold reached a record high this morning', 'gold', +1),
    Tweet('Gold fell to its lowest level since March', 'gold', -1),
    Tweet('Oil jumped 5% on supply worries', 'oil', +1),
    Tweet('Crude prices are sinking fast', 'oil', -1),
    Tweet('Gold is rising again', 'gold', +1),
    Tweet('It was a bad day for gold, which dropped 2%', 'gold', -1),
    Tweet('Oil gained ground in afternoon trading', 'oil', +1),
    Tweet('WTI crude is falling', 'oil', -1),
    Tweet('Microsoft shares fell after the earnings call', 'other', -1),
    Tweet('The yen strengthened against the dollar', 'other', +1),
    Tweet('Corn prices rose on drought fears', 'other', +1),
    Tweet('European stocks ended the day higher', 'other', +1),
    Tweet('The stock market was quiet today', 'other', +0),
    Tweet('Gold is holding steady', 'gold', +0),
    Tweet('Oil is unchanged this morning', 'oil', +0),
    Tweet('Amazon stock hit an all-time high', 'other', +1),
    Tweet('Emerging markets slid on the strong dollar', 'other', -1),
    Tweet('Ethereum dropped 10% overnight', 'other', -1),
    Tweet('Gold shines as investors seek safety', 'gold', +1),
    Tweet('Oil bears win again as crude slides', 'oil', -1),
    Tweet('the gold price is climbing', 'gold', +1),
    Tweet('oil keeps going down', 'oil', -1),
    Tweet('Experts think gold will fall further', 'gold', -1),
    Tweet('Crude rebounded strongly', 'oil', +1),
    Tweet('Palladium slipped', 'other', -1),
    Tweet('Bond yields were flat', 'other', +0),
    Tweet('Gold moved higher after the inflation report', 'gold', +1),
    Tweet('Gold slipped as the dollar firmed', 'gold', -1),
    Tweet('Oil rose for a third straight day', 'oil', +1),
    Tweet('Oil fell for the fifth day in a row', 'oil', -1),
    Tweet('Gold hit a fresh record above $3,000', 'gold', +1),
    Tweet('Gold prices are weaker this morning', 'gold', -1),
    Tweet('Crude spiked on news of the supply cut', 'oil', +1),
    Tweet('Oil is getting hammered today', 'oil', -1),
    Tweet('Investors piled into gold, pushing it up 2%', 'gold', +1),
    Tweet('Gold is having its worst week in a year', 'gold', -1),
    Tweet('The oil price is heading up', 'oil', +1),
    Tweet('Brent crude lost 3% on Friday', 'oil', -1),
    Tweet('Nvidia stock jumped after the results', 'other', +1),
    Tweet('The pound fell after the budget', 'other', -1),
    Tweet('Sugar prices were steady', 'other', +0),
    Tweet('US stocks finished the session flat', 'other', +0),
    Tweet('The central bank kept rates on hold', 'other', +0),
    Tweet('Gold was little changed on Monday', 'gold', +0),
    Tweet('Oil prices held steady overnight', 'oil', +0),
    Tweet('Netflix shares sank on weak subscriber growth', 'other', -1),
    Tweet('Asian markets rallied overnight', 'other', +1),
    Tweet('Bitcoin fell below $50,000', 'other', -1),
    Tweet('Gold climbs as traders look for a safe haven', 'gold', +1),
    Tweet('Oil plunged after the ceasefire announcement', 'oil', -1),
    Tweet('gold went up a lot today', 'gold', +1),
    Tweet('oil went down a lot today', 'oil', -1),
    Tweet('Analysts see oil prices rising next quarter', 'oil', +1),
    Tweet('Gold dipped in early trading', 'gold', -1),
    Tweet('Silver prices edged up', 'other', +1),
    Tweet('Copper was unchanged', 'other', +0),
]
HANDWRITTEN = [tweet.text for tweet in HANDWRITTEN_TWEETS]

# --- vocabulary -------------------------------------------------------------------------------------------------

_NAMES: dict[str, list[str]] = {
    "gold": [
        "gold", "gold", "gold", "spot gold", "gold futures", "bullion", "XAU", "XAU/USD", "$XAUUSD", "$GLD",
        "Comex gold", "the yellow metal", "the precious metal", "gold prices",
    ],
    "oil": [
        "oil", "oil", "crude", "crude oil", "WTI", "WTI crude", "Brent", "Brent crude", "oil futures", "$USO",
        "US crude", "oil prices", "crude futures", "the oil price",
    ],
    "bitcoin": ["bitcoin", "Bitcoin", "BTC", "$BTC", "crypto"],
    "equities": ["the S&P 500", "stocks", "the Nasdaq", "$SPY", "tech stocks", "the Dow", "US equities"],
    "silver": ["silver", "XAG", "$SLV"],
    "copper": ["copper", "Dr. Copper", "LME copper"],
    "natgas": ["natural gas", "nat gas", "Henry Hub gas", "$UNG"],
    "dollar": ["the dollar", "the DXY", "the greenback"],
    "platinum": ["platinum", "palladium", "platinum prices", "palladium futures"],
    "metals": ["aluminium", "nickel", "zinc", "iron ore", "lithium", "steel prices"],
    "grains": ["wheat", "corn", "soybeans", "wheat futures", "corn prices", "coffee", "cocoa", "sugar"],
    "crypto": ["ether", "Ethereum", "Solana", "dogecoin", "crypto stocks", "XRP"],
    "shares": ["Apple", "Apple shares", "Tesla", "Tesla stock", "Microsoft", "Amazon shares", "Nvidia", "Meta",
               "Netflix", "Boeing", "Alphabet", "bank stocks", "airline stocks", "Shell shares", "BP shares",
               "Exxon stock", "Newmont", "Barrick Gold shares"],
    "currencies": ["the euro", "the yen", "sterling", "the pound", "the Swiss franc", "the yuan", "EUR/USD",
                   "USD/JPY", "the rupee", "the Aussie dollar"],
    "indices": ["the FTSE 100", "the DAX", "the Nikkei", "the Hang Seng", "European stocks", "emerging markets",
                "global stocks", "world markets", "Wall Street", "the Russell 2000", "small caps"],
    "rates": ["Treasury yields", "bond yields", "the 10-year yield", "mortgage rates", "Bund yields", "gilts"],
    "housing": ["house prices", "the housing market", "home sales", "rents", "commercial property"],
}
# Plural names take "soar" / "are", not "soars" / "is".
_PLURAL = {"gold futures", "gold prices", "oil futures", "oil prices", "crude futures", "stocks", "tech stocks",
           "US equities", "platinum prices", "palladium futures", "steel prices", "soybeans", "wheat futures",
           "corn prices", "crypto stocks", "Apple shares", "Amazon shares", "bank stocks", "airline stocks",
           "Shell shares", "BP shares", "Barrick Gold shares", "European stocks", "emerging markets", "global stocks",
           "world markets", "small caps", "Treasury yields", "bond yields", "mortgage rates", "Bund yields", "gilts",
           "house prices", "home sales", "rents"}
# How an asset is named in "gold ETFs" or "its oil price forecast".
_NOUN = {"gold": "gold", "oil": "oil", "bitcoin": "bitcoin", "equities": "equity", "silver": "silver",
         "copper": "copper", "natgas": "natural gas", "dollar": "dollar", "platinum": "platinum", "metals": "metals",
         "grains": "grain", "crypto": "crypto", "shares": "share price", "currencies": "currency",
         "indices": "equity", "rates": "rates", "housing": "housing"}
_PRIMARY = ("gold", "oil")
# Assets neither trader holds, and the wider market: both call their news neutral, whichever way it moves.
_OTHERS = ("bitcoin", "equities", "silver", "copper", "natgas", "dollar", "platinum", "metals", "grains", "crypto",
           "shares", "currencies", "indices", "rates", "housing")

# (third person, past, base, takes an amount like "3.2%")
_UP_VERBS = [
    ("soars", "soared", "soar", True), ("surges", "surged", "surge", True), ("rallies", "rallied", "rally", True),
    ("jumps", "jumped", "jump", True), ("climbs", "climbed", "climb", True), ("rises", "rose", "rise", True),
    ("spikes", "spiked", "spike", True), ("rockets", "rocketed", "rocket", True), ("gains", "gained", "gain", True),
    ("advances", "advanced", "advance", True), ("skyrockets", "skyrocketed", "skyrocket", True),
    ("pops", "popped", "pop", True), ("rips higher", "ripped higher", "rip higher", False),
    ("hits a record high", "hit a record high", "hit a record high", False),
    ("hits record", "hit record", "hit record", False), ("extends gains", "extended gains", "extend gains", False),
    ("breaks out", "broke out", "break out", False),
    ("hits a fresh high", "hit a fresh high", "hit a fresh high", False),
    ("bounces back", "bounced back", "bounce back", False), ("moves higher", "moved higher", "move higher", True),
    ("goes up", "went up", "go up", False), ("edges higher", "edged higher", "edge higher", True),
    ("rebounds", "rebounded", "rebound", True), ("firms", "firmed", "firm", True),
    ("ticks up", "ticked up", "tick up", True),
    ("heads higher", "headed higher", "head higher", False), ("shoots up", "shot up", "shoot up", True),
    ("strengthens", "strengthened", "strengthen", True), ("recovers", "recovered", "recover", True),
    ("adds", "added", "add", True), ("settles higher", "settled higher", "settle higher", False),
    ("closes higher", "closed higher", "close higher", False), ("ends higher", "ended higher", "end higher", False),
    ("trades higher", "traded higher", "trade higher", False), ("extends its rally", "extended its rally",
                                                                 "extend its rally", False),
    ("notches gains", "notched gains", "notch gains", False), ("posts gains", "posted gains", "post gains", False),
    ("climbs back", "climbed back", "climb back", False), ("perks up", "perked up", "perk up", False),
    ("powers ahead", "powered ahead", "power ahead", False), ("pushes higher", "pushed higher", "push higher", True),
    ("picks up", "picked up", "pick up", True), ("books a gain", "booked a gain", "book a gain", False),
]
_DOWN_VERBS = [
    ("plunges", "plunged", "plunge", True), ("slides", "slid", "slide", True), ("tumbles", "tumbled", "tumble", True),
    ("drops", "dropped", "drop", True), ("falls", "fell", "fall", True), ("sinks", "sank", "sink", True),
    ("slumps", "slumped", "slump", True), ("crashes", "crashed", "crash", True), ("dives", "dove", "dive", True),
    ("retreats", "retreated", "retreat", True), ("loses ground", "lost ground", "lose ground", False),
    ("collapses", "collapsed", "collapse", True),
    ("craters", "cratered", "crater", True), ("extends losses", "extended losses", "extend losses", False),
    ("hits a six-month low", "hit a six-month low", "hit a six-month low", False),
    ("breaks down", "broke down", "break down", False), ("sells off", "sold off", "sell off", False),
    ("moves lower", "moved lower", "move lower", True), ("slips", "slipped", "slip", True),
    ("hits a multi-year low", "hit a multi-year low", "hit a multi-year low", False),
    ("goes down", "went down", "go down", False), ("edges lower", "edged lower", "edge lower", True),
    ("weakens", "weakened", "weaken", True), ("declines", "declined", "decline", True), ("loses", "lost", "lose", True),
    ("ticks down", "ticked down", "tick down", True), ("heads lower", "headed lower", "head lower", False),
    ("tanks", "tanked", "tank", True), ("gives up its gains", "gave up its gains", "give up its gains", False),
    ("dips", "dipped", "dip", True), ("eases", "eased", "ease", True), ("sheds", "shed", "shed", True),
    ("settles lower", "settled lower", "settle lower", False), ("closes lower", "closed lower", "close lower", False),
    ("ends lower", "ended lower", "end lower", False), ("trades lower", "traded lower", "trade lower", False),
    ("pares gains", "pared gains", "pare gains", False), ("posts losses", "posted losses", "post losses", False),
    ("slips back", "slipped back", "slip back", False), ("skids", "skidded", "skid", True),
    ("sags", "sagged", "sag", True), ("drifts lower", "drifted lower", "drift lower", True),
    ("books a loss", "booked a loss", "book a loss", False),
]
_REASONS: dict[tuple[str, int], list[str]] = {
    ("gold", +1): [
        "as the dollar weakens", "on safe-haven demand", "after a soft CPI print", "as central banks keep buying",
        "as Fed rate-cut bets grow", "amid geopolitical jitters", "as real yields fall", "on strong ETF inflows",
    ],
    ("gold", -1): [
        "as Treasury yields climb", "as the dollar strengthens", "on hawkish Fed comments", "as risk appetite returns",
        "after a hot jobs report", "on heavy profit-taking", "as ETF outflows mount", "as rate-cut hopes fade",
    ],
    ("oil", +1): [
        "after OPEC+ extends output cuts", "on Middle East supply fears", "after a big inventory draw",
        "as refinery demand picks up", "on hopes for stronger Chinese demand", "after a pipeline outage",
        "as hurricane season threatens Gulf output", "on new sanctions against exporters",
    ],
    ("oil", -1): [
        "as OPEC+ raises output", "after a surprise inventory build", "on recession fears",
        "as Chinese demand weakens", "as US production hits a record", "on ceasefire hopes",
        "as the demand outlook darkens", "after Saudi Arabia cuts its selling prices",
    ],
}
_GENERIC_REASONS = [
    "in early trade", "after the Fed decision", "on heavy volume", "as traders pile in", "after the open",
    "as markets digest the data", "into the close",
]
_WHEN = [
    "today", "overnight", "this morning", "in early trade", "in Asian trading", "in after-hours trading",
    "this week", "on the day", "at the open", "in late trading", "so far this session", "",
]
_SOURCES = [
    "", "", "", "BREAKING: ", "JUST IN: ", "Reuters: ", "Bloomberg: ", "MARKETS: ", "UPDATE: ", "🚨 ", "FLASH: ",
]
_HASHTAGS: dict[str, list[str]] = {
    "gold": ["#gold", "#XAUUSD", "#bullion", "#preciousmetals"],
    "oil": ["#oil", "#OOTT", "#crude", "#WTI", "#Brent"],
    "bitcoin": ["#bitcoin", "#crypto", "#BTC"],
    "equities": ["#stocks", "#SPX", "#investing"],
    "silver": ["#silver"],
    "copper": ["#copper", "#metals"],
    "natgas": ["#natgas", "#energy"],
    "dollar": ["#forex", "#DXY", "#USD"],
}
_COMMON_TAGS = ["#markets", "#commodities", "#trading", "#finance", "#macro"]
_COMMENTS = ["Wow.", "Didn't see that coming.", "Here we go.", "Huge move.", "Wild session.", "Thoughts?",
             "Big if it holds.", "Noted.", "Not a drill."]
_BANKS = ["Goldman", "JPMorgan", "Citi", "Morgan Stanley", "UBS", "BofA", "HSBC", "Barclays", "Macquarie"]
_EVENTS = ["the Fed decision", "CPI data", "the jobs report", "Powell's speech", "the OPEC+ meeting",
           "the inventory report", "the ECB meeting", "GDP figures"]
_MOODS = {+1: ["bulls in control", "new highs incoming", "what a run", "momentum is strong"],
          -1: ["bears in control", "look out below", "ugly session", "no floor in sight"]}


_PLAIN_UP = ["up", "rising", "climbing", "going up", "higher", "up again", "moving up", "on the rise",
             "gaining", "surging", "rallying", "on a tear", "on fire", "ripping", "flying", "booming",
             "on a roll", "mooning", "pumping", "popping", "red hot", "soaring"]
_PLAIN_DOWN = ["down", "falling", "sinking", "going down", "lower", "down again", "moving down", "dropping",
               "sliding", "tumbling", "crashing", "losing ground", "getting hammered", "getting crushed",
               "getting smashed", "tanking", "dumping", "under pressure", "in freefall", "bleeding", "cratering",
               "getting killed", "slumping"]
_PLAIN_FLAT = ["holding steady", "unchanged", "flat", "steady", "range-bound", "treading water", "little changed",
               "stuck in a range", "going nowhere", "drifting sideways", "barely moving", "in a holding pattern"]
# What moves a price, in either direction, for "a weaker dollar sends gold higher": a cause of its own that does
# not say which way the asset went, so the asset's own verb must be read.
_CAUSES = ["the dollar", "the Fed", "the jobs report", "a surprise data print", "the latest CPI figures",
           "the bond market", "the central bank", "fresh headlines", "the trade talks", "a supply shock",
           "China's data", "OPEC's decision", "the earnings season", "the news", "heavy selling", "heavy buying",
           "the inventory report", "the election result", "a short squeeze", "profit-taking", "a rush to safety"]
_PUSH_UP = ["sends {name} higher", "lifts {name}", "pushes {name} up", "drives {name} higher", "sends {name} soaring",
            "boosts {name}", "props up {name}", "sends {name} up"]
_PUSH_DOWN = ["sends {name} lower", "drags {name} down", "pushes {name} down", "knocks {name} lower",
              "weighs on {name}", "sends {name} tumbling", "hits {name}", "pulls {name} lower"]
_SINCE = ["March", "last summer", "2019", "2021", "the pandemic", "January", "the start of the year", "2008"]


def _level(rng: random.Random, asset: str) -> str:
    if asset == "gold":
        return f"${rng.randint(1750, 2950):,}" + rng.choice(["", "/oz", " an ounce"])
    if asset == "oil":
        return f"${rng.uniform(52, 118):.2f}" + rng.choice(["", " a barrel", "/bbl"])
    return ""


def _amount(rng: random.Random) -> str:
    # Kept under 10% so the showcase headline ("up 150%") can never come out verbatim.
    return f"{rng.uniform(0.2, 9.8):.1f}%"


# The share of moves explained by another asset's move in either direction ("gold dips as bond yields climb"): the
# reason's verb then says nothing of the asset's, so a model must tell the subject's verb from the reason's.
_CROSS_REASON_SHARE = 0.3


def _cross_reason(rng: random.Random, asset: str) -> str:
    other = rng.choice([name for name in _OTHERS if name != asset])
    name = rng.choice(_NAMES[other])
    third, past, base, _ = rng.choice(rng.choice((_UP_VERBS, _DOWN_VERBS)))
    return f"{rng.choice(['as', 'while', 'after'])} {name} {base if name in _PLURAL else third}"


def _directional(rng: random.Random, asset: str, direction: int) -> str:
    name = rng.choice(_NAMES[asset])
    third, past, base, takes_amount = rng.choice(_UP_VERBS if direction > 0 else _DOWN_VERBS)
    plural = name in _PLURAL
    if plural:
        third = base
    amount = f" {_amount(rng)}" if takes_amount and rng.random() < 0.6 else ""
    reasons = _REASONS.get((asset, direction), _GENERIC_REASONS)
    reason, when, source = rng.choice(reasons), rng.choice(_WHEN), rng.choice(_SOURCES)
    if rng.random() < _CROSS_REASON_SHARE:
        reason = _cross_reason(rng, asset)
    up = direction > 0
    level = _level(rng, asset)
    templates = [
        f"{source}{name} {third}{amount} {when}",
        f"{source}{name} {third}{amount} {reason}",
        f"{name} {third} {reason} {when}",
        f"{name} just {past}{amount}. {rng.choice(_COMMENTS)}",
        f"{name} {past}{amount} {when} — what's next?",
        f"{name} {third}{amount}, {rng.choice(_MOODS[direction])}",
        f"{name} {'are' if plural else 'is'} {'up' if up else 'down'} {_amount(rng)} {when}",
        f"{source}{rng.choice(_BANKS)} expects {name} to {base} {reason}",
        f"{rng.choice(_BANKS)} {'raises' if up else 'cuts'} its {_NOUN[asset]} price forecast",
        f"{_NOUN[asset]} {'ETFs see record inflows' if up else 'ETFs bleed as investors pull out'}",
        f"lol {name} {past} again {when}",
        f"{name} {'higher' if up else 'lower'} {reason}",
        # Plain phrasings, as people write them rather than as headlines do.
        f"{name} {'are' if plural else 'is'} {rng.choice(_PLAIN_UP if up else _PLAIN_DOWN)} {when}",
        f"{name} {'keep' if plural else 'keeps'} going {'up' if up else 'down'}",
        f"the price of {_NOUN[asset]} {past}{amount} {when}",
        f"{name} {'reached its highest' if up else 'fell to its lowest'} level since {rng.choice(_SINCE)}",
        f"{rng.choice(['good', 'great', 'big']) if up else rng.choice(['bad', 'rough', 'terrible'])} day for "
        f"{_NOUN[asset]}, {'up' if up else 'down'} {_amount(rng)}",
        f"{rng.choice(['analysts', 'strategists', 'traders', 'experts'])} expect {name} to {base} further",
        f"{name} {past} {rng.choice(['sharply', 'strongly', 'slightly', 'again', 'a lot'])} {when}",
        # The move caused by something else, the asset the object: "the dollar knocks gold lower".
        f"{source}{rng.choice(_CAUSES)} {rng.choice(_PUSH_UP if up else _PUSH_DOWN).format(name=name)} {when}",
        f"{name} {'are' if plural else 'is'} {rng.choice(_PLAIN_UP if up else _PLAIN_DOWN)} "
        f"{rng.choice(['this week', 'this month', 'again', 'right now', 'rn', 'lately', when])}",
        f"{name} {past} for a {rng.choice(['second', 'third', 'fourth', 'fifth', 'sixth'])} straight "
        f"{rng.choice(['day', 'session', 'week'])}",
        f"{rng.choice(['strong', 'big', 'solid']) if up else rng.choice(['weak', 'ugly', 'awful'])} session for "
        f"{_NOUN[asset]}, {name} {past}{amount}",
        f"{name} {past} {reason}, its {'best' if up else 'worst'} "
        f"{rng.choice(['day', 'week', 'month'])} since {rng.choice(_SINCE)}",
    ]
    if level:
        # "to $X" needs a verb of motion, not "hits a record high"
        if takes_amount:
            templates.append(f"{source}{name} {third} to {level} {reason}")
        templates.append(f"{name} {third} {when}, last at {level}")
    return rng.choice(templates)


def _flat(rng: random.Random, asset: str) -> str:
    name, when, event = rng.choice(_NAMES[asset]), rng.choice(_WHEN), rng.choice(_EVENTS)
    level = _level(rng, asset) or "recent levels"
    return rng.choice([
        f"{name} little changed {when} ahead of {event}",
        f"{name} flat as traders await {event}",
        f"What's your outlook on {name} this week?",
        f"{name} steady near {level}",
        f"Watching {name} closely into {event}",
        f"{rng.choice(_SOURCES)}{name} volatility expected around {event}",
        f"Thread: everything you need to know about {name} before {event}",
        f"{name} {'trade' if name in _PLURAL else 'trades'} sideways {when}, range-bound",
        f"{rng.choice(_BANKS)} keeps its {_NOUN[asset]} forecast unchanged",
        f"{name} {'are' if name in _PLURAL else 'is'} {rng.choice(_PLAIN_FLAT)} {when}",
        f"quiet day for {_NOUN[asset]}, {name} barely moved",
        f"{name} {'were' if name in _PLURAL else 'was'} flat {when}",
        f"no big moves in {_NOUN[asset]} {when}",
        f"{name} {'end' if name in _PLURAL else 'ends'} the session where {'they' if name in _PLURAL else 'it'} "
        f"started",
        f"{name} {'hover' if name in _PLURAL else 'hovers'} near {level} {when}",
        f"where do you think {name} {'go' if name in _PLURAL else 'goes'} from here?",
        f"anyone {rng.choice(['trading', 'watching', 'buying', 'selling'])} {name} {when}?",
        f"{name} {'are' if name in _PLURAL else 'is'} {rng.choice(_PLAIN_FLAT)} ahead of {event}",
    ])


def _finish(rng: random.Random, text: str, asset: str) -> str:
    text = " ".join(text.split()).replace(" ,", ",").replace(" .", ".")
    if rng.random() < 0.45:
        text += " " + " ".join(rng.sample(_HASHTAGS.get(asset, []) + _COMMON_TAGS, k=rng.randint(1, 2)))
    if rng.random() < 0.12:
        return text.lower()
    return text[0].upper() + text[1:] if text[0].isalpha() else text


def _one_tweet(rng: random.Random) -> Tweet:
    roll = rng.random()
    if roll < 0.55:  # a directional gold/oil tweet: the ones John and Jane disagree on
        asset, direction = rng.choice(_PRIMARY), rng.choice((+1, -1))
    elif roll < 0.67:
        asset, direction = rng.choice(_PRIMARY), 0
    else:
        asset, direction = rng.choice(_OTHERS), rng.choice((+1, -1, 0))
    raw = _directional(rng, asset, direction) if direction else _flat(rng, asset)
    return Tweet(_finish(rng, raw, asset), asset, direction)


def generate_tweets(n: int, seed: int = 0) -> list[Tweet]:
    """``n`` distinct tweets, the same ones for the same seed."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    showcase = {text.lower() for text in SHOWCASE + HANDWRITTEN}
    tweets: list[Tweet] = []
    seen: set[str] = set()
    attempts = 0
    while len(tweets) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(f"cannot generate {n} distinct demo tweets; got {len(tweets)}")
        tweet = _one_tweet(rng)
        key = tweet.text.lower()
        # Distinct texts, since a label file keeps one label per (user, text).
        if key in seen or key in showcase:
            continue
        seen.add(key)
        tweets.append(tweet)
    return tweets


def label_for(user: DemoUser, tweet: Tweet) -> str:
    """``positive`` if the move helps the user's position, ``negative`` if it hurts, else ``neutral``."""
    exposure = user.positions.get(tweet.asset, 0) * tweet.direction
    return "positive" if exposure > 0 else "negative" if exposure < 0 else "neutral"


def demo_rows(
    n_per_user: int = 300,
    seed: int = 0,
    noise: float = 0.05,
    users: Sequence[DemoUser] = (JOHN, JANE),
) -> list[dict[str, Any]]:
    """Label rows (user, text, label, item) for each user over the same tweets, with a share ``noise`` flipped."""
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be between 0 and 1, got {noise}")
    names = [user.name for user in users]
    if len(set(names)) != len(names):
        raise ValueError(f"demo user names must be distinct, got {names}")
    tweets = generate_tweets(n_per_user, seed)
    # A separate stream, so changing the noise never changes which tweets are drawn.
    noise_rng = random.Random(f"noise-{seed}")
    rows: list[dict[str, Any]] = []
    for user in users:
        for index, tweet in enumerate(tweets):
            label = label_for(user, tweet)
            if noise_rng.random() < noise:
                label = noise_rng.choice([other for other in LABELS if other != label])
            rows.append({"user": user.name, "text": tweet.text, "label": label, "item": f"demo-{seed}-{index:05d}"})
    return rows


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> None:
    """Write rows as UTF-8 JSON lines, the format :mod:`localize.labels_io` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
