"""The category taxonomy: EverOS's 20 defaults, the ``.taxonomy.md`` format, and classification.

``.taxonomy.md`` holds only a frontmatter, ``{kind: knowledge_taxonomy, categories: [{id,
description}]}`` (EverOS reference §4). everos also writes each category's ``keywords`` after its
description; EverOS's reader takes ``id`` and ``description`` only and ignores them. People edit
this file, so :func:`parse_taxonomy_md` forgives what it can and skips what it cannot use.

:func:`classify` is the offline classifier (G11): deterministic term matching of a text against
each category's id, keywords and description, falling back to ``Others``. Pure functions only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from everos.errors import InvalidInput
from everos.knowledge._layout import sanitize_name
from everos.knowledge._markdown import dump_frontmatter, parse_markdown
from everos.knowledge._models import OTHERS_CATEGORY

__all__ = [
    "DEFAULT_CATEGORIES",
    "Category",
    "classify",
    "parse_taxonomy_md",
    "render_taxonomy_md",
]

TAXONOMY_KIND: Final = "knowledge_taxonomy"
_MAX_CATEGORIES: Final = 500
_MAX_DESCRIPTION_CHARS: Final = 2000
_MAX_KEYWORDS: Final = 200


@dataclass(frozen=True)
class Category:
    """One category: its id (also its directory name), a description and matching keywords."""

    id: str
    description: str
    keywords: tuple[str, ...] = ()


def _category(id: str, description: str, keywords: str) -> Category:
    return Category(id, description, tuple(k for k in keywords.split(", ") if k))


DEFAULT_CATEGORIES: Final[tuple[Category, ...]] = (
    _category("Technology", "Software, computing, the internet, AI and the devices and networks they run on.",
              "software, computer, programming, code, api, database, server, cloud, network, internet, "
              "algorithm, machine learning, artificial intelligence, ai, llm, python, javascript, linux, "
              "kubernetes, docker, cybersecurity, encryption, app, developer, 软件, 计算机, 编程, 人工智能, 算法, 数据库"),
    _category("Science", "Research and findings in physics, chemistry, biology, astronomy and earth sciences.",
              "physics, chemistry, biology, astronomy, experiment, hypothesis, molecule, atom, quantum, "
              "particle, genome, gene, cell, evolution, laboratory, scientific, theory, planet, galaxy, "
              "geology, 物理, 化学, 生物, 实验, 科学"),
    _category("Medical", "Health care, diseases, diagnosis, treatment, drugs, clinical practice and public health.",
              "patient, disease, diagnosis, treatment, therapy, clinical, hospital, doctor, nurse, drug, "
              "medication, dose, symptom, surgery, vaccine, infection, cancer, diabetes, medical, health, "
              "病人, 疾病, 诊断, 治疗, 医院, 药物, 医疗"),
    _category("Finance", "Money, banking, investing, markets, accounting, taxes and the economy.",
              "finance, bank, banking, investment, investor, stock, bond, market, portfolio, interest rate, "
              "loan, credit, tax, accounting, revenue, profit, earnings, dividend, inflation, currency, "
              "crypto, 金融, 银行, 投资, 股票, 税, 会计"),
    _category("Legal", "Laws, regulations, contracts, courts, compliance and legal rights.",
              "law, legal, court, judge, lawyer, attorney, contract, clause, regulation, statute, "
              "compliance, liability, lawsuit, litigation, plaintiff, defendant, copyright, patent, gdpr, "
              "license, 法律, 合同, 法院, 律师, 法规"),
    _category("Education", "Teaching, learning, schools, universities, courses and curricula.",
              "education, school, student, teacher, teaching, learning, course, curriculum, lesson, "
              "university, college, classroom, exam, homework, grade, tutorial, training, pedagogy, "
              "教育, 学校, 学生, 老师, 课程, 考试"),
    _category("Business", "Companies, strategy, management, marketing, sales, operations and startups.",
              "business, company, strategy, management, manager, marketing, sales, customer, product, "
              "startup, entrepreneur, revenue, operations, supply chain, stakeholder, meeting, kpi, okr, "
              "employee, hiring, 企业, 公司, 管理, 营销, 销售, 客户"),
    _category("Engineering", "Designing and building machines, structures, circuits and industrial systems.",
              "engineering, engineer, mechanical, electrical, civil, circuit, voltage, load, structure, "
              "design, manufacturing, sensor, motor, machine, bridge, material, tolerance, cad, "
              "prototype, 工程, 机械, 电路, 制造, 设计"),
    _category("Arts", "Visual art, music, literature, film, theatre, design and culture.",
              "art, artist, painting, sculpture, music, song, album, novel, poem, poetry, literature, film, "
              "movie, theatre, theater, dance, gallery, museum, design, photography, 艺术, 音乐, 文学, 电影, 绘画"),
    _category("Sports", "Athletes, games, competitions, training and fitness.",
              "sport, sports, football, soccer, basketball, tennis, baseball, athlete, team, coach, match, "
              "tournament, league, championship, olympic, fitness, workout, training, score, player, "
              "体育, 运动, 足球, 篮球, 比赛"),
    _category("Travel", "Trips, destinations, tourism, hotels, flights and getting around.",
              "travel, trip, tourism, tourist, destination, hotel, flight, airport, itinerary, visa, "
              "passport, luggage, vacation, holiday, journey, sightseeing, booking, guide, "
              "旅行, 旅游, 酒店, 航班, 景点"),
    _category("Food", "Cooking, recipes, ingredients, nutrition, restaurants and drinks.",
              "food, recipe, cooking, cook, ingredient, kitchen, meal, dish, restaurant, chef, bake, "
              "flavor, nutrition, diet, vegetable, fruit, meat, wine, coffee, tea, 美食, 食谱, 烹饪, 餐厅, 食材"),
    _category("Environment", "Climate, ecology, pollution, conservation, energy and sustainability.",
              "environment, environmental, climate, emission, carbon, pollution, ecology, ecosystem, "
              "biodiversity, conservation, sustainability, renewable, solar, wind, recycling, waste, "
              "wildlife, forest, 环境, 气候, 污染, 生态, 可持续"),
    _category("Politics", "Government, elections, parties, public policy and international relations.",
              "politics, political, government, election, vote, voter, party, parliament, congress, "
              "senate, president, minister, policy, diplomacy, democracy, campaign, legislation, "
              "geopolitics, 政治, 政府, 选举, 政策, 外交"),
    _category("History", "Past events, eras, civilizations, wars, archaeology and historical figures.",
              "history, historical, century, ancient, medieval, empire, dynasty, war, revolution, "
              "civilization, archaeology, kingdom, colonial, era, heritage, 历史, 朝代, 古代, 战争, 帝国"),
    _category("Psychology", "The mind and behaviour: cognition, emotion, mental health and therapy.",
              "psychology, psychological, mental health, cognitive, cognition, emotion, behavior, "
              "behaviour, anxiety, depression, personality, motivation, memory, therapy, therapist, "
              "stress, mindfulness, 心理, 情绪, 认知, 焦虑, 抑郁"),
    _category("Agriculture", "Farming, crops, livestock, soil, irrigation and food production.",
              "agriculture, agricultural, farm, farming, farmer, crop, harvest, soil, irrigation, "
              "fertilizer, pesticide, livestock, cattle, seed, yield, greenhouse, orchard, "
              "农业, 农民, 作物, 种植, 养殖, 土壤"),
    _category("RealEstate", "Property, housing, buying, selling, renting and real-estate development.",
              "real estate, property, housing, house, apartment, rent, rental, tenant, landlord, "
              "mortgage, lease, buyer, seller, listing, zoning, construction, 房地产, 房产, 住房, 租房, 房贷"),
    _category("Media", "News, journalism, broadcasting, publishing, advertising and social media.",
              "media, news, journalism, journalist, newspaper, magazine, broadcast, television, radio, "
              "podcast, press, headline, editor, publishing, social media, advertising, influencer, "
              "新闻, 媒体, 记者, 广告, 社交媒体"),
    _category(OTHERS_CATEGORY, "Anything that fits none of the categories above.", ""),
)
"""EverOS's 20 default categories, in EverOS's order, with everos's descriptions and keywords."""

# Weights of a matched term; a count saturates so one repeated word cannot decide alone.
_KEYWORD_WEIGHT: Final = 2
_DESCRIPTION_WEIGHT: Final = 1
_COUNT_CAP: Final = 4
_MIN_SCORE: Final = 4
_WORD_RE: Final = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_HAN_RE: Final = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_DESCRIPTION_STOPWORDS: Final = frozenset(
    "and the for with that their they them from into about anything above none other others".split()
)


def render_taxonomy_md(categories: Iterable[Category]) -> str:
    """The ``.taxonomy.md`` text: frontmatter only, ``id`` then ``description`` then ``keywords``."""
    entries: list[dict[str, Any]] = []
    for category in categories:
        entry: dict[str, Any] = {"id": category.id, "description": category.description}
        if category.keywords:
            entry["keywords"] = list(category.keywords)
        entries.append(entry)
    return dump_frontmatter({"kind": TAXONOMY_KIND, "categories": entries})


def parse_taxonomy_md(text: str) -> tuple[Category, ...]:
    """Read ``.taxonomy.md`` forgivingly; returns ``()`` when no usable category is found.

    Entries may be mappings (``id``, ``description``, optional ``keywords`` as a list or a
    comma-separated string) or bare strings (an id without description). Ids go through
    :func:`sanitize_name` (they are directory names): an id that sanitizes to nothing is skipped,
    ``Real Estate`` becomes ``Real_Estate``, and a repeated id (ignoring case) keeps its first
    entry. At most 500 categories are read. Malformed YAML also gives ``()``; the caller decides
    whether to fall back to :data:`DEFAULT_CATEGORIES`.
    """
    try:
        meta, _ = parse_markdown(text)
    except InvalidInput:
        return ()
    raw = meta.get("categories")
    if not isinstance(raw, list):
        return ()
    seen: set[str] = set()
    categories: list[Category] = []
    for item in raw:
        category = _category_from_entry(item)
        if category is None or category.id.casefold() in seen:
            continue
        seen.add(category.id.casefold())
        categories.append(category)
        if len(categories) == _MAX_CATEGORIES:
            break
    return tuple(categories)


def _category_from_entry(item: Any) -> Category | None:
    if isinstance(item, str):
        item = {"id": item}
    if not isinstance(item, dict) or not isinstance(item.get("id"), (str, int)) or isinstance(item["id"], bool):
        return None
    category_id = sanitize_name(str(item["id"]).strip(), "")
    if not category_id:
        return None
    description = item.get("description")
    description = description.strip()[:_MAX_DESCRIPTION_CHARS] if isinstance(description, str) else ""
    keywords = item.get("keywords")
    if isinstance(keywords, str):
        keywords = keywords.split(",")
    if not isinstance(keywords, list):
        keywords = []
    cleaned = tuple(k.strip() for k in keywords if isinstance(k, str) and k.strip())[:_MAX_KEYWORDS]
    return Category(category_id, description, cleaned)


def classify(text: str, categories: Sequence[Category]) -> str:
    """The id of the category whose terms ``text`` matches best, else ``Others``.

    A category's terms are its id, its keywords (weight 2) and the longer words of its
    description (weight 1). Single words match whole words with a light plural folding; phrases
    and Chinese terms match as substrings. Each term's count is capped at 4. The best category
    needs a score of at least 4 (a keyword found twice, or two keywords); ties go to the earlier
    category. ``Others`` is never scored. Deterministic; linear in ``len(text)``; pass a bounded
    sample for huge documents.
    """
    lowered = text.casefold()
    words = Counter(_fold(word) for word in _WORD_RE.findall(lowered))
    best_id, best_score = OTHERS_CATEGORY, 0
    for category in categories:
        if category.id == OTHERS_CATEGORY:
            continue
        score = sum(weight * min(_count(term, words, lowered), _COUNT_CAP) for term, weight in _terms(category).items())
        if score > best_score:
            best_id, best_score = category.id, score
    return best_id if best_score >= _MIN_SCORE else OTHERS_CATEGORY


def _terms(category: Category) -> dict[str, int]:
    terms: dict[str, int] = {}
    for word in _WORD_RE.findall(category.description.casefold()):
        if len(word) >= 5 and word not in _DESCRIPTION_STOPWORDS:
            terms[word] = _DESCRIPTION_WEIGHT
    # Split CamelCase ids ("RealEstate") so they can match running text too.
    id_words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", category.id).replace("_", " ")
    for keyword in (id_words, *category.keywords):
        keyword = " ".join(keyword.casefold().split())
        if keyword:
            terms[keyword] = _KEYWORD_WEIGHT
    return terms


def _count(term: str, words: Counter[str], lowered: str) -> int:
    if " " in term or _HAN_RE.search(term) or not _WORD_RE.fullmatch(term):
        return lowered.count(term)
    return words[_fold(term)]


def _fold(word: str) -> str:
    # Plural folding only: "databases" and "database" meet; "analysis" keeps its "s".
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word
