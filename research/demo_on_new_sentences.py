"""The demo's recipe on finance sentences written after the generator and the demo's own 90 hand-written sentences:
how well John's and Jane's adapters read writing that guided nothing. For each seed, generates the demo's labels,
trains each trader's adapter as ``localize demo`` did before 4 Dec (an MLP head on the frozen base), scores the demo's
own hand-written sentences, ``GUIDE`` (70 sentences, whose misses guided the variants tried), ``CHECK`` (60 written
on 4 Dec before any variant ran), ``FRESH`` (60 written on 5 Dec before that day's variants ran; CHECK's misses had
been printed once by then), ``LATE`` (60 written after the demo moved to three task priors, before any run scored
them), ``NEWEST`` and ``FINAL`` (60 each, written in a later session before any of its runs; the misses of every set
but FINAL were then read to widen the generator, so FINAL alone has chosen nothing since, and its misses are never
printed), and ``UNSEEN`` (60, written in the session after, before any of its runs, by a writer who had read no set's
misses; it chose nothing, and judged only what that session adopted). ``--set key=value`` changes a training
argument of the traders' heads (``pooled_dropout=0.3``),
``--prior-set`` one of the task prior (``prior_max_epochs=12``), ``--hidden N`` the MLP's width; ``--on-prior``
trains a task prior on both traders' labels first (the default recipe's prior) and each trader's MLP head on it
(``prior-mlp``); ``--set head_ensemble=5`` five MLP heads per trader, averaged into one (``prior-mlp-averaged``).
``--misses`` lists the sentences of the sets ``--misses-from`` names (the demo's own and GUIDE unless told) that a
trader got wrong in at least a quarter of the seeds. ``--prior-scale A`` multiplies the task priors' LoRA updates by
A before the heads train (a weight-space mix of the prior and the base); ``--generator-set`` changes a constant of the
generator (``_CROSS_REASON_SHARE=0``). ``--priors K`` trains K task priors from different seeds on the same
labels, each trader's heads on each, and averages their probabilities. ``--product`` trains exactly what
``localize demo`` trains today (three task priors side by side, five MLP heads per trader on each, one served head).

    python research/demo_on_new_sentences.py --seeds 12 --product

Status: current (reports/findings.md, rounds 14-20 and 24): ``--on-prior`` won on GUIDE over twelve seeds, then five
heads averaged won again; a wider generator and a longer-trained prior lost (round 18); three priors averaged gained
(round 18) and are what ``localize demo`` trains since round 19 (``--product`` measures it); a generator widened
along the misses of NEWEST and the older sets gained on FINAL and is the demo's since round 24; ``--prior-scale 0.5``
gained nothing (round 24); 3,000 labels a trader instead of 1,000 gained on every set and is the demo's default
since round 25, as is ``prior-lora`` with a warm-up (``--candidate prior-lora``), whole-task training's choice on
those labels.
"""
from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import torch

from localize.activations import ActivationCache
from localize.base_model import get_base_model
from localize import demo_data
from localize.demo import DEMO_CANDIDATE, DEMO_HEAD_OPTIONS
from localize.demo_data import (DEFAULT_LABELS_PER_USER, HANDWRITTEN_TWEETS, JANE, JOHN, LABELS, Tweet, demo_rows,
                                label_for)
from prior_seed_soup import souped_prior
from localize.recipe_candidates import candidate_named
from localize.training import Trainer
from localize.training_args import TrainingArguments

_DIRECTION = {"up": +1, "down": -1, "none": 0}

# (text, asset, direction): "other" is any asset neither trader holds, or the wider market.
GUIDE = [
    ('Gold prices jumped 3% this morning on safe-haven demand', 'gold', 'up'),
    ('The yellow metal hit a fresh all-time high on Friday', 'gold', 'up'),
    ('Gold futures climbed for a fifth straight session', 'gold', 'up'),
    ('Investors piled into gold as recession fears grew, sending it higher', 'gold', 'up'),
    ('Spot gold surged past $3,000 an ounce', 'gold', 'up'),
    ('Gold gained ground after the Fed signalled rate cuts', 'gold', 'up'),
    ('Bullion advanced sharply as the dollar weakened', 'gold', 'up'),
    ('Gold is trading much higher today', 'gold', 'up'),
    ("Gold's rally shows no sign of slowing", 'gold', 'up'),
    ('Precious metals soared, led by gold', 'gold', 'up'),
    ('gold up big today', 'gold', 'up'),
    ("Gold bounced back strongly after last week's selloff", 'gold', 'up'),
    ('Gold prices fell 2% as Treasury yields rose', 'gold', 'down'),
    ('The price of gold dropped to its lowest level since March', 'gold', 'down'),
    ('Gold slid for a third day as risk appetite returned', 'gold', 'down'),
    ('Bullion tumbled after strong jobs data lifted the dollar', 'gold', 'down'),
    ('Gold futures plunged in early trading', 'gold', 'down'),
    ('Gold is getting hammered this week', 'gold', 'down'),
    ('Spot gold slipped below $1,900', 'gold', 'down'),
    ('Gold lost its shine as investors fled to stocks', 'gold', 'down'),
    ('gold down 4% today', 'gold', 'down'),
    ('The gold price crashed after the central bank sold reserves', 'gold', 'down'),
    ('Gold retreated from its record as traders took profits', 'gold', 'down'),
    ('Gold weakened sharply on hawkish Fed comments', 'gold', 'down'),
    ('Oil prices rose 5% after OPEC announced deeper cuts', 'oil', 'up'),
    ('Crude oil climbed to a six-month high', 'oil', 'up'),
    ('Brent jumped above $90 a barrel', 'oil', 'up'),
    ('WTI futures rallied on falling inventories', 'oil', 'up'),
    ('Oil surged as tensions in the Middle East escalated', 'oil', 'up'),
    ('Crude prices spiked after a hurricane hit Gulf refineries', 'oil', 'up'),
    ('oil is way up this morning', 'oil', 'up'),
    ('Petroleum prices keep climbing as demand recovers', 'oil', 'up'),
    ('Oil extended its gains for a fourth week', 'oil', 'up'),
    ('Crude rebounded strongly after the supply report', 'oil', 'up'),
    ('Barrel prices soared on news of Saudi production cuts', 'oil', 'up'),
    ("Oil rose sharply as China's demand picked up", 'oil', 'up'),
    ('Oil prices fell 4% on fears of a global slowdown', 'oil', 'down'),
    ('Crude oil dropped to its lowest level in a year', 'oil', 'down'),
    ('Brent slumped below $60 a barrel', 'oil', 'down'),
    ('WTI futures sank after a surprise build in inventories', 'oil', 'down'),
    ('Oil tumbled as OPEC members pumped more than agreed', 'oil', 'down'),
    ('Crude prices plunged amid weak demand from China', 'oil', 'down'),
    ('oil getting crushed today', 'oil', 'down'),
    ('Oil slid for a third straight session', 'oil', 'down'),
    ('The price of crude fell sharply on Monday', 'oil', 'down'),
    ('Oil prices declined as the ceasefire held', 'oil', 'down'),
    ('Brent crude retreated after a two-week rally', 'oil', 'down'),
    ('Oil lost 8% this week on oversupply worries', 'oil', 'down'),
    ('Apple shares rose 4% after strong iPhone sales', 'other', 'none'),
    ('The S&P 500 closed at a record high', 'other', 'none'),
    ('Bitcoin fell below $40,000 overnight', 'other', 'none'),
    ('The euro weakened against the dollar', 'other', 'none'),
    ('Tesla stock plunged after disappointing deliveries', 'other', 'none'),
    ('Copper prices jumped on supply concerns in Chile', 'other', 'none'),
    ('Silver edged lower in quiet trading', 'other', 'none'),
    ('The Nasdaq dropped 2% as tech sold off', 'other', 'none'),
    ('Wheat futures surged after a poor harvest', 'other', 'none'),
    ('Natural gas prices slumped on mild weather', 'other', 'none'),
    ('Treasury yields climbed to a 15-year high', 'other', 'none'),
    ('The Dow rallied 500 points on Friday', 'other', 'none'),
    ('Ethereum soared 20% this week', 'other', 'none'),
    ('Amazon reports earnings after the bell', 'other', 'none'),
    ('The yen slid to a 30-year low', 'other', 'none'),
    ('European stocks ended the day flat', 'other', 'none'),
    ('Shares of Nvidia hit a new record', 'other', 'none'),
    ('The Fed left interest rates unchanged', 'other', 'none'),
    ('Coffee prices spiked on drought in Brazil', 'other', 'none'),
    ('Bank stocks tumbled after the earnings miss', 'other', 'none'),
    ('The housing market cooled in the third quarter', 'other', 'none'),
    ('Platinum rose modestly today', 'other', 'none'),
]
CHECK = [
    ('Gold just broke through $2,500 for the first time', 'gold', 'up'),
    ('Huge day for gold bugs, prices ripping', 'gold', 'up'),
    ('Gold rose on Tuesday as the dollar eased', 'gold', 'up'),
    ('Gold is on track for its best month since 2020', 'gold', 'up'),
    ('Demand for gold lifted prices to a record', 'gold', 'up'),
    ('Gold futures ended the session sharply higher', 'gold', 'up'),
    ('The gold price is soaring again', 'gold', 'up'),
    ('Gold notched its biggest weekly gain in a year', 'gold', 'up'),
    ('Bullion climbed as investors sought safety', 'gold', 'up'),
    ('Gold edged up after the inflation report', 'gold', 'up'),
    ('Gold sold off hard after the rate decision', 'gold', 'down'),
    ('Gold prices sank to a three-month low', 'gold', 'down'),
    ('Gold had its worst week since November', 'gold', 'down'),
    ('Gold is falling fast this afternoon', 'gold', 'down'),
    ('Bullion fell as the greenback strengthened', 'gold', 'down'),
    ('Gold dipped below $2,000 on Thursday', 'gold', 'down'),
    ('Spot gold declined 1.5% in London', 'gold', 'down'),
    ('Gold extended its slide for a fourth session', 'gold', 'down'),
    ('Gold prices are collapsing right now', 'gold', 'down'),
    ('Gold eased as traders booked profits', 'gold', 'down'),
    ('Oil prices surged on Monday after the attack on a tanker', 'oil', 'up'),
    ('Crude is ripping higher this morning', 'oil', 'up'),
    ('Oil hit its highest level since last year', 'oil', 'up'),
    ('Brent rose 3% after Saudi Arabia extended cuts', 'oil', 'up'),
    ('Crude oil futures settled sharply higher', 'oil', 'up'),
    ('Oil gained as US stockpiles shrank', 'oil', 'up'),
    ('The price of oil keeps rising', 'oil', 'up'),
    ('Oil is on track for its biggest weekly gain in months', 'oil', 'up'),
    ('WTI climbed above $80', 'oil', 'up'),
    ('Crude prices jumped after the pipeline shutdown', 'oil', 'up'),
    ('Oil sank 6% as demand worries grew', 'oil', 'down'),
    ('Crude prices tumbled after OPEC boosted production', 'oil', 'down'),
    ('Oil had its worst day in two years', 'oil', 'down'),
    ('Brent fell below $70 a barrel', 'oil', 'down'),
    ('Crude oil is dropping like a rock', 'oil', 'down'),
    ('WTI declined for the fifth straight day', 'oil', 'down'),
    ('Oil prices slipped as inventories swelled', 'oil', 'down'),
    ('The oil price plummeted overnight', 'oil', 'down'),
    ('Crude futures settled lower on weak demand data', 'oil', 'down'),
    ('Oil slumped to a four-month low', 'oil', 'down'),
    ('Microsoft shares climbed after earnings beat estimates', 'other', 'none'),
    ('The FTSE 100 fell 1% on Tuesday', 'other', 'none'),
    ('Bitcoin surged to a new all-time high', 'other', 'none'),
    ('The pound jumped against the dollar', 'other', 'none'),
    ('Corn prices dropped after a record harvest', 'other', 'none'),
    ('Silver rallied 4% this week', 'other', 'none'),
    ('Stocks sank as bond yields spiked', 'other', 'none'),
    ('Netflix stock soared after subscriber growth', 'other', 'none'),
    ('Iron ore prices slid on weak Chinese steel demand', 'other', 'none'),
    ('The Nikkei closed at a record high', 'other', 'none'),
    ('Cocoa prices hit a new record', 'other', 'none'),
    ('Mortgage rates fell to their lowest in a year', 'other', 'none'),
    ('Dogecoin crashed 30% overnight', 'other', 'none'),
    ('Airline stocks rose as travel demand recovered', 'other', 'none'),
    ('The dollar index slipped after the jobs report', 'other', 'none'),
    ('Lithium prices plunged this year', 'other', 'none'),
    ('Boeing shares fell on safety concerns', 'other', 'none'),
    ('Sugar futures climbed to a 12-year high', 'other', 'none'),
    ('European markets opened higher', 'other', 'none'),
    ('The yuan strengthened after the central bank stepped in', 'other', 'none'),
]

# Written on 5 Dec 2026 before any generator change of that day, after a run that listed GUIDE's and CHECK's
# misses: a second set that chose nothing.
FRESH = [
    ('Gold climbed to a two-week high as bond yields eased', 'gold', 'up'),
    ('Bullion prices are moving sharply higher this afternoon', 'gold', 'up'),
    ('Gold added 1.5% after weak manufacturing data', 'gold', 'up'),
    ('The gold price is on the rise again', 'gold', 'up'),
    ('Gold notched its best week since October', 'gold', 'up'),
    ('Strong buying lifted gold to a new peak', 'gold', 'up'),
    ('Gold powered higher as investors sought shelter', 'gold', 'up'),
    ('gold mooning rn', 'gold', 'up'),
    ('Precious metal gold posted solid gains on Wednesday', 'gold', 'up'),
    ('Gold prices strengthened after the inflation report', 'gold', 'up'),
    ('Gold sank to a one-month low on Thursday', 'gold', 'down'),
    ('Bullion shed 2% as the dollar firmed', 'gold', 'down'),
    ('Gold prices are sliding this morning', 'gold', 'down'),
    ('The gold market suffered its worst day in months', 'gold', 'down'),
    ('Gold eased lower ahead of the Fed meeting', 'gold', 'down'),
    ('Heavy selling pushed gold down sharply', 'gold', 'down'),
    ('Gold fell back below $2,000', 'gold', 'down'),
    ('gold dumping hard today', 'gold', 'down'),
    ('Spot gold declined for the second session running', 'gold', 'down'),
    ('Gold buyers retreated and prices dropped', 'gold', 'down'),
    ('Oil climbed after Russia announced export limits', 'oil', 'up'),
    ('Brent crude pushed higher in London trading', 'oil', 'up'),
    ('Crude prices are soaring this week', 'oil', 'up'),
    ('Oil posted its biggest daily gain in a year', 'oil', 'up'),
    ('WTI rose above $80 for the first time since April', 'oil', 'up'),
    ('Oil prices firmed as US inventories fell', 'oil', 'up'),
    ('Crude jumped on reports of a tanker attack', 'oil', 'up'),
    ('oil ripping higher today', 'oil', 'up'),
    ('Oil prices rallied on expectations of tighter supply', 'oil', 'up'),
    ('The oil price went up sharply after the OPEC meeting', 'oil', 'up'),
    ('Oil sank as demand worries resurfaced', 'oil', 'down'),
    ('Brent crude dropped below $70 a barrel', 'oil', 'down'),
    ('Crude prices are falling again this morning', 'oil', 'down'),
    ('Oil suffered its steepest weekly loss since March', 'oil', 'down'),
    ('WTI slumped after a big rise in US stockpiles', 'oil', 'down'),
    ('Oil prices slipped as OPEC pumped more', 'oil', 'down'),
    ('Crude tumbled 6% in a broad commodity selloff', 'oil', 'down'),
    ('oil dumping hard rn', 'oil', 'down'),
    ('Oil fell for a second week on weak Chinese imports', 'oil', 'down'),
    ('The price of crude plunged overnight', 'oil', 'down'),
    ('Gold was flat in quiet holiday trading', 'gold', 'none'),
    ('Gold prices held steady on Monday', 'gold', 'none'),
    ('Oil prices were little changed after the report', 'oil', 'none'),
    ('Crude traded flat as investors awaited OPEC', 'oil', 'none'),
    ('What is everyone expecting from gold this quarter?', 'gold', 'none'),
    ('Oil hovered near $75 for most of the session', 'oil', 'none'),
    ('Silver jumped 4% on industrial demand', 'other', 'up'),
    ('The Nasdaq closed sharply lower on Friday', 'other', 'down'),
    ('Bitcoin surged past $100,000', 'other', 'up'),
    ('Copper prices slid on weak Chinese data', 'other', 'down'),
    ('The euro fell to a two-year low against the dollar', 'other', 'down'),
    ('Natural gas prices soared during the cold snap', 'other', 'up'),
    ('Tesla shares tumbled after the earnings miss', 'other', 'down'),
    ('Wheat futures rallied on drought fears', 'other', 'up'),
    ('The S&P 500 hit another record high', 'other', 'up'),
    ('Treasury yields dropped after the jobs data', 'other', 'down'),
    ('Japanese stocks rose for a third day', 'other', 'up'),
    ('Cocoa prices crashed from their record', 'other', 'down'),
    ('Platinum edged lower in thin trade', 'other', 'down'),
    ('Global markets were calm ahead of the holiday', 'other', 'none'),
]


# Written on 5 Dec 2026 in a later session, after the demo switched to three task priors and before any run scored
# them: a fourth set that chose nothing.
LATE = [
    ('Gold extended its winning streak to six sessions', 'gold', 'up'),
    ('Bullion rose as traders bet on lower rates', 'gold', 'up'),
    ('Gold is climbing fast this morning', 'gold', 'up'),
    ('The gold price shot up after the ceasefire collapsed', 'gold', 'up'),
    ('Gold finished the week solidly higher', 'gold', 'up'),
    ('Central bank buying drove gold up again', 'gold', 'up'),
    ('gold breaking out to new highs', 'gold', 'up'),
    ('Gold rose 1% in Asian hours', 'gold', 'up'),
    ('Demand for gold bars pushed prices up sharply', 'gold', 'up'),
    ('Gold gained for the first time in four days', 'gold', 'up'),
    ('Gold retreated from its record as the dollar rallied', 'gold', 'down'),
    ('Gold prices went down after the rate decision', 'gold', 'down'),
    ('Bullion dropped sharply in New York trading', 'gold', 'down'),
    ('Gold lost 3% this week', 'gold', 'down'),
    ('The selloff in gold deepened on Tuesday', 'gold', 'down'),
    ('gold getting crushed today', 'gold', 'down'),
    ('Gold declined as investors took profits', 'gold', 'down'),
    ('Spot gold fell to its weakest level in two months', 'gold', 'down'),
    ('Gold slumped after upbeat retail sales', 'gold', 'down'),
    ('Prices of gold are down again this morning', 'gold', 'down'),
    ('Oil rose after a refinery fire in Texas', 'oil', 'up'),
    ('Crude rallied to its highest since the summer', 'oil', 'up'),
    ('Brent gained 4% as Middle East tensions flared', 'oil', 'up'),
    ('Oil prices climbed for a third straight day', 'oil', 'up'),
    ('Crude is shooting higher after the OPEC cut', 'oil', 'up'),
    ('oil pumping hard this morning', 'oil', 'up'),
    ('WTI jumped above $85', 'oil', 'up'),
    ('Oil finished the week sharply higher', 'oil', 'up'),
    ('A cold winter forecast sent heating oil and crude up', 'oil', 'up'),
    ('Oil prices advanced on falling US stockpiles', 'oil', 'up'),
    ('Oil dropped 5% after OPEC raised output', 'oil', 'down'),
    ('Crude slid as the demand outlook darkened', 'oil', 'down'),
    ('Brent fell to a three-year low', 'oil', 'down'),
    ('Oil prices tumbled on recession fears', 'oil', 'down'),
    ('WTI lost ground for a fourth session', 'oil', 'down'),
    ('oil tanking today', 'oil', 'down'),
    ('Crude prices went down after the inventory report', 'oil', 'down'),
    ('Oil weakened as the dollar strengthened', 'oil', 'down'),
    ('The oil price collapsed overnight', 'oil', 'down'),
    ('Crude futures declined in early trading', 'oil', 'down'),
    ('Gold was unchanged at the close', 'gold', 'none'),
    ('Gold traded in a narrow range all day', 'gold', 'none'),
    ('Where do you think gold goes from here?', 'gold', 'none'),
    ('Oil prices were steady in Asian trade', 'oil', 'none'),
    ('Crude barely moved after the OPEC statement', 'oil', 'none'),
    ('What is the outlook for oil next year?', 'oil', 'none'),
    ('The Dow rose 400 points on Thursday', 'other', 'up'),
    ('Silver prices slumped 3%', 'other', 'down'),
    ('Ethereum rallied 12% this week', 'other', 'up'),
    ('Apple shares fell after the product launch', 'other', 'down'),
    ('Corn futures climbed on dry weather', 'other', 'up'),
    ('The pound dropped against the dollar', 'other', 'down'),
    ('Emerging market stocks surged', 'other', 'up'),
    ('Nickel prices plunged on oversupply', 'other', 'down'),
    ('Bond yields rose sharply on Friday', 'other', 'up'),
    ('The FTSE 100 slipped at the open', 'other', 'down'),
    ('Coffee prices hit a record high', 'other', 'up'),
    ('Bank stocks sank on credit worries', 'other', 'down'),
    ('Stock markets were mixed on Monday', 'other', 'none'),
    ('Wall Street was quiet ahead of the Fed decision', 'other', 'none'),
]

# Written on 5 Dec 2026 in a later session, before any variant of this session ran: a fifth set that chose nothing.
NEWEST = [
    ('Gold prices moved higher on Wednesday as the dollar eased', 'gold', 'up'),
    ('Bullion is on a tear this month', 'gold', 'up'),
    ('Gold notched its best week since April', 'gold', 'up'),
    ('gold ripping higher rn', 'gold', 'up'),
    ('Safe-haven buying lifted gold to a record', 'gold', 'up'),
    ('The price of an ounce of gold rose by $40 today', 'gold', 'up'),
    ('Gold rallied after weak US manufacturing data', 'gold', 'up'),
    ('Gold futures settled higher for the day', 'gold', 'up'),
    ('Gold is up nearly 2% since the open', 'gold', 'up'),
    ('Gold climbed back above $2,500', 'gold', 'up'),
    ('Gold sank after the Fed surprised with a hike', 'gold', 'down'),
    ('Bullion has been falling all week', 'gold', 'down'),
    ('Gold posted its worst day in a month', 'gold', 'down'),
    ('gold dumping hard this afternoon', 'gold', 'down'),
    ('The gold price fell back below $2,000', 'gold', 'down'),
    ('Gold futures settled lower on Tuesday', 'gold', 'down'),
    ('Gold dipped as bond yields climbed', 'gold', 'down'),
    ('Spot gold is down 1.5% at midday', 'gold', 'down'),
    ('Gold prices eased as safe-haven demand faded', 'gold', 'down'),
    ('A strong dollar knocked gold lower', 'gold', 'down'),
    ('Oil prices moved higher on supply worries', 'oil', 'up'),
    ('Crude is on a tear this week', 'oil', 'up'),
    ('Oil notched its biggest weekly gain in a year', 'oil', 'up'),
    ('crude ripping higher after the EIA numbers', 'oil', 'up'),
    ('Brent crude settled higher on Monday', 'oil', 'up'),
    ('Oil climbed back above $80 a barrel', 'oil', 'up'),
    ('WTI is up 3% since the open', 'oil', 'up'),
    ('Output cuts lifted oil prices again', 'oil', 'up'),
    ('Oil rallied after pipeline outages in Canada', 'oil', 'up'),
    ('The price of a barrel of crude rose by $4 today', 'oil', 'up'),
    ('Oil sank as OPEC members pumped more', 'oil', 'down'),
    ('Crude has been falling all month', 'oil', 'down'),
    ('Oil posted its worst week since March', 'oil', 'down'),
    ('oil dumping after the inventory build', 'oil', 'down'),
    ('Brent fell back below $70', 'oil', 'down'),
    ('WTI futures settled lower on Friday', 'oil', 'down'),
    ('Oil dipped on worries about Chinese demand', 'oil', 'down'),
    ('Crude is down 2% at midday', 'oil', 'down'),
    ('Oil prices eased as the hurricane missed the rigs', 'oil', 'down'),
    ('A surprise jump in supply knocked crude lower', 'oil', 'down'),
    ('Gold ended the session where it started', 'gold', 'none'),
    ('Gold is stuck around $2,300 for now', 'gold', 'none'),
    ('Anyone trading gold today?', 'gold', 'none'),
    ('Oil ended the session where it started', 'oil', 'none'),
    ('Crude is stuck in a tight range for now', 'oil', 'none'),
    ('Anyone watching oil this week?', 'oil', 'none'),
    ('The S&P 500 moved higher on Wednesday', 'other', 'up'),
    ('Silver is on a tear this month', 'other', 'up'),
    ('Bitcoin ripping higher rn', 'other', 'up'),
    ('Copper climbed back above $4 a pound', 'other', 'up'),
    ('Soybean futures settled higher for the day', 'other', 'up'),
    ('The Nasdaq posted its worst day in a month', 'other', 'down'),
    ('Natural gas has been falling all week', 'other', 'down'),
    ('The yen dipped as bond yields climbed', 'other', 'down'),
    ('Palladium sank after the auto sales report', 'other', 'down'),
    ('Shares of Ford are down 3% at midday', 'other', 'down'),
    ('The euro ended the session where it started', 'other', 'none'),
    ('Stocks are stuck in a tight range for now', 'other', 'none'),
    ('Anyone trading the Dow today?', 'other', 'none'),
    ('The ECB meets on Thursday', 'other', 'none'),
]


# Written on 5 Dec 2026 before any run of this session's variants scored it, and never read for misses: the set that
# judges them.
FINAL = [
    ('Gold hit a record as investors sought shelter from the turmoil', 'gold', 'up'),
    ('Gold prices are higher for a second day', 'gold', 'up'),
    ('Bullion extended gains in London trading', 'gold', 'up'),
    ('gold to the moon today', 'gold', 'up'),
    ('Gold advanced as inflation fears mounted', 'gold', 'up'),
    ('Weaker dollar sends gold soaring', 'gold', 'up'),
    ('Gold had a strong session, closing up 1.8%', 'gold', 'up'),
    ('Gold spiked after the bank failures', 'gold', 'up'),
    ('Gold rose to within a dollar of its record', 'gold', 'up'),
    ('The metal gained 2% as gold buyers returned', 'gold', 'up'),
    ('Gold prices are lower for a second day', 'gold', 'down'),
    ('Gold gave back all of this week\'s gains', 'gold', 'down'),
    ('Bullion fell in London trading', 'gold', 'down'),
    ('gold falling off a cliff', 'gold', 'down'),
    ('Gold declined as the dollar firmed', 'gold', 'down'),
    ('Stronger dollar sends gold lower', 'gold', 'down'),
    ('Gold had a weak session, closing down 1.4%', 'gold', 'down'),
    ('Gold tumbled to a two-month low', 'gold', 'down'),
    ('Gold prices plunged as yields jumped', 'gold', 'down'),
    ('Gold is having a terrible week', 'gold', 'down'),
    ('Oil hit a record as supply fears mounted', 'oil', 'up'),
    ('Oil prices are higher for a second day', 'oil', 'up'),
    ('Crude extended gains in New York trading', 'oil', 'up'),
    ('oil to the moon today', 'oil', 'up'),
    ('Oil advanced as OPEC held back supply', 'oil', 'up'),
    ('Tighter supply sends crude soaring', 'oil', 'up'),
    ('Oil had a strong session, closing up 2.5%', 'oil', 'up'),
    ('Brent spiked after the tanker attack', 'oil', 'up'),
    ('WTI rose to its highest in a year', 'oil', 'up'),
    ('Crude oil is having a great week', 'oil', 'up'),
    ('Oil prices are lower for a second day', 'oil', 'down'),
    ('Crude gave back all of this week\'s gains', 'oil', 'down'),
    ('Brent fell in London trading', 'oil', 'down'),
    ('oil falling off a cliff', 'oil', 'down'),
    ('Oil declined as stockpiles grew', 'oil', 'down'),
    ('Weak demand sends crude lower', 'oil', 'down'),
    ('Oil had a weak session, closing down 3%', 'oil', 'down'),
    ('WTI tumbled to a two-year low', 'oil', 'down'),
    ('Oil prices plunged as the trade war escalated', 'oil', 'down'),
    ('Crude is having a terrible month', 'oil', 'down'),
    ('Gold prices are little moved this afternoon', 'gold', 'none'),
    ('Is now a good time to buy gold?', 'gold', 'none'),
    ('Gold hovered near $2,400 all day', 'gold', 'none'),
    ('Oil prices are little moved this afternoon', 'oil', 'none'),
    ('Is now a good time to buy oil stocks?', 'oil', 'none'),
    ('Brent hovered near $80 all day', 'oil', 'none'),
    ('Silver hit a record as investors sought shelter', 'other', 'up'),
    ('Stocks are higher for a second day', 'other', 'up'),
    ('Bitcoin to the moon today', 'other', 'up'),
    ('Weaker dollar sends copper soaring', 'other', 'up'),
    ('Nvidia shares spiked after earnings', 'other', 'up'),
    ('The Nikkei had a strong session, closing up 2%', 'other', 'up'),
    ('Silver prices are lower for a second day', 'other', 'down'),
    ('Bitcoin falling off a cliff', 'other', 'down'),
    ('Stronger dollar sends the euro lower', 'other', 'down'),
    ('The Dow tumbled 700 points', 'other', 'down'),
    ('Wheat prices plunged on bumper crops', 'other', 'down'),
    ('Stocks are little moved this afternoon', 'other', 'none'),
    ('Is now a good time to buy bitcoin?', 'other', 'none'),
    ('The central bank will publish its minutes next week', 'other', 'none'),
]


# Written at the start of the session of 5 Dec, night, before any run scored them, by a writer who had not read any
# set's misses: UNSEEN judges whatever that session adopted, and its misses are never printed either.
UNSEEN = [
    ('Spot gold climbed 1.2% to $2,415 an ounce by midday', 'gold', 'up'),
    ('Gold bugs are finally having their moment, prices ripping higher', 'gold', 'up'),
    ('Precious metal rallies as Treasury yields slide', 'gold', 'up'),
    ('Gold notched its biggest weekly gain since March', 'gold', 'up'),
    ('XAU breaking out above resistance, up nearly 2%', 'gold', 'up'),
    ('Central bank buying pushed gold to fresh highs', 'gold', 'up'),
    ("gold's up big today, nice", 'gold', 'up'),
    ('Safe-haven demand lifts gold', 'gold', 'up'),
    ('Gold jumps after weak jobs report', 'gold', 'up'),
    ('Gold futures settled sharply higher on Friday', 'gold', 'up'),
    ('Spot gold slid 1.5% to $2,290 an ounce by midday', 'gold', 'down'),
    ('Rough day for gold bugs as prices sink', 'gold', 'down'),
    ('Precious metal retreats as Treasury yields climb', 'gold', 'down'),
    ('Gold posted its steepest weekly loss in a year', 'gold', 'down'),
    ('XAU breaking down below support, off nearly 2%', 'gold', 'down'),
    ('Profit-taking dragged gold off its highs', 'gold', 'down'),
    ("gold's down big today, ugh", 'gold', 'down'),
    ('Fading safe-haven demand weighs on gold', 'gold', 'down'),
    ('Gold drops after a hot jobs report', 'gold', 'down'),
    ('Gold futures settled sharply lower on Friday', 'gold', 'down'),
    ('Brent crude climbed 2% to $86 a barrel', 'oil', 'up'),
    ('Oil bulls are back as prices push higher', 'oil', 'up'),
    ('Crude rallies on hopes of stronger Chinese demand', 'oil', 'up'),
    ('Oil notched its third weekly gain in a row', 'oil', 'up'),
    ('WTI breaks above $90 for the first time since October', 'oil', 'up'),
    ('Saudi output cuts pushed oil prices up sharply', 'oil', 'up'),
    ('oil ripping today, wow', 'oil', 'up'),
    ('Hurricane threat lifts crude futures', 'oil', 'up'),
    ('Oil jumps after a surprise draw in inventories', 'oil', 'up'),
    ('Crude futures settled higher on Tuesday', 'oil', 'up'),
    ('Brent crude slid 3% to $74 a barrel', 'oil', 'down'),
    ('Brutal day for oil bulls as prices sink', 'oil', 'down'),
    ('Crude retreats on worries about Chinese demand', 'oil', 'down'),
    ('Oil posted its biggest monthly drop since 2022', 'oil', 'down'),
    ('WTI breaks below $70 for the first time in months', 'oil', 'down'),
    ('A glut of supply pushed oil prices down sharply', 'oil', 'down'),
    ('oil puking today, yikes', 'oil', 'down'),
    ('Recession fears weigh on crude futures', 'oil', 'down'),
    ('Oil drops after a surprise build in inventories', 'oil', 'down'),
    ('Crude futures settled lower on Tuesday', 'oil', 'down'),
    ('Gold traded flat ahead of the Fed decision', 'gold', 'none'),
    ("What's everyone's outlook on gold for next year?", 'gold', 'none'),
    ('Gold was unchanged at $2,350 in early trade', 'gold', 'none'),
    ('Oil traded flat ahead of the OPEC meeting', 'oil', 'none'),
    ('Anyone have a view on crude for next quarter?', 'oil', 'none'),
    ('Brent was unchanged at $82 in early trade', 'oil', 'none'),
    ('Platinum climbed 2% to a three-month high', 'other', 'up'),
    ('The S&P 500 closed at a record high', 'other', 'up'),
    ('Ethereum rallies after the network upgrade', 'other', 'up'),
    ('Coffee prices jumped 8% on frost fears', 'other', 'up'),
    ('Apple shares jumped after strong iPhone sales', 'other', 'up'),
    ('Silver slid 3% as industrial demand faltered', 'other', 'down'),
    ('The FTSE 100 closed sharply lower', 'other', 'down'),
    ('Ethereum tumbles after the exchange hack', 'other', 'down'),
    ('Tesla shares sank after deliveries disappointed', 'other', 'down'),
    ('The yen weakened past 150 to the dollar', 'other', 'down'),
    ('Markets were quiet ahead of the holiday', 'other', 'none'),
    ('Silver traded flat in early trade', 'other', 'none'),
    ('The Fed meets again in January', 'other', 'none'),
    ('Which broker do you use for trading stocks?', 'other', 'none'),
]


def _scaled(prior, scale: float):
    """``prior`` with its LoRA updates times ``scale`` (its head unchanged): 1 is the prior as trained."""
    if scale == 1.0:
        return prior
    params = {name: value * scale if name.endswith("lora_B.weight") else value for name, value in prior.params.items()}
    return dataclasses.replace(prior, params=params, _fingerprint=None)


def _tweets(rows: list[tuple[str, str, str]]) -> list[Tweet]:
    return [Tweet(text, asset, _DIRECTION[direction]) for text, asset, direction in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=6, help="seeds 0..N-1 (labels, split and initialisation)")
    parser.add_argument("--first-seed", type=int, default=0, help="start there instead (seeds F..F+N-1)")
    parser.add_argument("--labels-per-user", type=int, default=DEFAULT_LABELS_PER_USER,
                        help="generated labels per trader (default: the demo's)")
    parser.add_argument("--hidden", type=int, default=DEMO_HEAD_OPTIONS["hidden"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a training argument, the value read as JSON (repeatable)")
    parser.add_argument("--prior-set", action="append", default=[], metavar="KEY=VALUE",
                        help="with --on-prior: a training argument of the task prior (prior_max_epochs=12)")
    parser.add_argument("--priors", type=int, default=1,
                        help="with --on-prior: K task priors from seeds seed, seed + 1000, ... (each trader's heads "
                             "trained on each), their probabilities averaged; the first is the one-prior run's")
    parser.add_argument("--soup", action="store_true",
                        help="with --priors K: the K priors start from the first's LoRA and head and are served as one "
                             "(the mean of their weight updates, prior_seed_soup.py); each trader's heads train once")
    parser.add_argument("--prior-scale", type=float, default=1.0,
                        help="with --product: the task priors' LoRA updates times this before the traders' heads "
                             "train on them (0.5: halfway back to the base, as weight-space ensembles of a fine-tuned "
                             "and a pretrained model do)")
    parser.add_argument("--generator-set", action="append", default=[], metavar="NAME=VALUE",
                        help="a constant of localize.demo_data, the value read as JSON (_CROSS_REASON_SHARE=0)")
    parser.add_argument("--on-prior", action="store_true", help="MLP heads on a task prior (prior-mlp)")
    parser.add_argument("--product", action="store_true",
                        help="train exactly as `localize demo` does (its candidate recipe, through the trainer)")
    parser.add_argument("--candidate", default=DEMO_CANDIDATE, metavar="RECIPE",
                        help="with --product: another of whole-task training's candidates instead of the demo's "
                             "(prior-lora)")
    parser.add_argument("--misses", action="store_true",
                        help="at the end, every sentence of the sets --misses-from names that a trader got wrong in "
                             "at least a quarter of the seeds")
    parser.add_argument("--misses-from", nargs="+", default=["demo's own", "guide"], metavar="SET",
                        help="the sets whose misses --misses shows (default: the demo's own and GUIDE; a set whose "
                             "misses were read guides from then on, so name the others only when retiring them)")
    options = parser.parse_args()
    if {"final", "unseen"} & set(options.misses_from):
        parser.error("FINAL and UNSEEN judge the variants: their misses are never shown")
    extra = {key: json.loads(value) for key, value in (item.split("=", 1) for item in options.set)}
    prior_extra = {key: json.loads(value) for key, value in (item.split("=", 1) for item in options.prior_set)}
    for name, value in (item.split("=", 1) for item in options.generator_set):
        if not hasattr(demo_data, name):
            parser.error(f"localize.demo_data has no {name}")
        setattr(demo_data, name, json.loads(value))
    base = get_base_model()
    sets = {"demo's own": HANDWRITTEN_TWEETS, "guide": _tweets(GUIDE), "check": _tweets(CHECK),
            "fresh": _tweets(FRESH), "late": _tweets(LATE),
            "newest": _tweets(NEWEST), "final": _tweets(FINAL), "unseen": _tweets(UNSEEN)}
    shares: dict[str, list[float]] = {name: [] for name in sets}
    missed: dict[tuple[str, str, str], int] = {}
    for seed in range(options.first_seed, options.first_seed + options.seeds):
        rows = demo_rows(n_per_user=options.labels_per_user, seed=seed)
        # A sentence the labels contain would not be new: the generator's copies of the sets' sentences are dropped.
        written = {tweet.text.lower() for name, tweets in sets.items() if name != "demo's own" for tweet in tweets}
        rows = [row for row in rows if row["text"].lower() not in written]
        line = [f"seed {seed}:"]
        if len(rows) < 2 * options.labels_per_user:
            line.append(f"({options.labels_per_user - len(rows) // 2} generated sentences of the sets dropped)")
        runs = []  # (prior or None, the heads' arguments, its cache): one per task prior
        if options.product:  # exactly what ``localize demo`` trains: its candidate's prior(s), then each trader's heads
            args = dataclasses.replace(candidate_named(options.candidate).args, seed=seed)
            cache = ActivationCache(max_bytes=2 << 30)
            trainer = Trainer(base, dataclasses.replace(args.for_prior(), **prior_extra), [row["text"] for row in rows],
                              [row["label"] for row in rows], LABELS, cache=cache,
                              annotators=[row["user"] for row in rows])
            trainer.train()
            runs.append((_scaled(trainer.result(), options.prior_scale), dataclasses.replace(args, **extra), cache))
        elif options.on_prior:
            start = None  # with --soup: the first prior's starting LoRA and head, where every prior starts
            for k in range(options.priors):
                cache = ActivationCache(max_bytes=2 << 30)
                default = TrainingArguments(seed=seed + 1000 * k, **prior_extra)
                trainer = Trainer(base, default.for_prior(), [row["text"] for row in rows],
                                  [row["label"] for row in rows], LABELS, cache=cache,
                                  annotators=[row["user"] for row in rows])
                trainer.prepare()
                if options.soup and start is None:
                    start = ({n: v.clone() for n, v in trainer.params.items()},
                             {n: v.clone() for n, v in trainer.head.items()})
                elif options.soup:
                    trainer.adapter.params = {n: v.clone() for n, v in start[0].items()}
                    trainer.adapter.head = {n: v.clone() for n, v in start[1].items()}
                trainer.fit()
                runs.append((trainer.result(), dataclasses.replace(TrainingArguments(seed=seed + 1000 * k),
                                                                   head_hidden=options.hidden, **extra), cache))
            if options.soup:
                runs = [(souped_prior([prior for prior, _, _ in runs]), runs[0][1],
                         ActivationCache(max_bytes=2 << 30))]
        else:
            runs.append((None, TrainingArguments(method="head", method_options={"hidden": options.hidden}, seed=seed,
                                                 train_scope="all", **extra), ActivationCache(max_bytes=2 << 30)))
        for user in (JOHN, JANE):
            mine = [row for row in rows if row["user"] == user.name]
            trainers = []
            for prior, args, cache in runs:
                trainer = Trainer(base, args, [row["text"] for row in mine], [row["label"] for row in mine], LABELS,
                                  init=prior, cache=cache)
                trainer.train()
                trainers.append(trainer)
            for name, tweets in sets.items():
                texts = [tweet.text for tweet in tweets]
                predicted = torch.stack([t.predict_proba(texts) for t in trainers]).mean(0).argmax(1).tolist()
                share = float(np.mean([LABELS[i] == label_for(user, tweet) for i, tweet in zip(predicted, tweets)]))
                shares[name].append(share)
                for index, tweet in zip(predicted, tweets):
                    if name in options.misses_from and LABELS[index] != label_for(user, tweet):
                        key = (name, user.name, f"{tweet.text} -> {LABELS[index]}")
                        missed[key] = missed.get(key, 0) + 1
                line.append(f"{user.name} {name} {share:.2f}")
        print(" ".join(line), flush=True)
    for name, values in shares.items():
        print(f"{name} ({len(sets[name])} sentences): mean {np.mean(values):.3f}, lowest {np.min(values):.3f} "
              f"over {options.seeds} seeds and both traders")
    if options.misses:
        for (name, user_name, miss), count in sorted(missed.items(), key=lambda item: -item[1]):
            if count * 4 >= options.seeds:
                print(f"missed {count}/{options.seeds}: {name}, {user_name}: {miss}")


if __name__ == "__main__":
    main()
