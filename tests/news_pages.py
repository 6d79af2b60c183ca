"""Realistic news article pages built around real articles, for testing main-text extraction and the feed
fetcher against what the web actually serves.

The article text is real (RealTime QA's news corpus in ../shared/evaldata, never copied into the repository);
everything around it is the clutter real news sites wrap an article in: a site header with a navigation menu,
a cookie banner, ads and sponsored links, a newsletter box, share buttons, "related" and "most read" lists,
an author bio, a comments section and a footer of legal text. Several templates, chosen at random, differ in
what real sites differ in: semantic `<article>`/`<main>` markup or plain `<div>`s, the date in
`article:published_time`, JSON-LD, a `<time datetime>` in the byline or only in its text, and where the
clutter sits (some of it inside the article container, as ad slots and newsletter boxes are on real pages).

Every boilerplate sentence on a page is recorded, so a test can measure both what an extractor keeps of the
article and what it lets through of the rest. Short interface labels ("Home", "Share", "Advertisement")
are on the pages but not recorded: they are not sentences, and a kept "Share" is not what makes a passage
useless to a reader.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from rag.ingest.chunking import split_sentences

ROOT = Path(__file__).resolve().parent.parent
CORPUS = (ROOT / ".." / "shared" / "evaldata" / "realtimeqa" / "corpus.jsonl").resolve()
"""RealTime QA's news corpus (see ../shared/evaldata/README.md); read-only, for evaluation only."""

MIN_CHARS = 800
MAX_CHARS = 15_000
"""Article lengths used: long enough to be an article, short enough to be one news story (the corpus has
search results of 100,000 characters that are whole listing pages)."""

SITES = [
    ("The Daily Ledger", "dailyledger.example"),
    ("Riverside Tribune", "riversidetribune.example"),
    ("Metro Herald", "metroherald.example"),
    ("Northern Post", "northernpost.example"),
    ("Coastal Courier", "coastalcourier.example"),
    ("The Evening Chronicle", "eveningchronicle.example"),
    ("Valley Gazette", "valleygazette.example"),
    ("Capital Observer", "capitalobserver.example"),
]
SECTIONS = ["News", "World", "Politics", "Business", "Technology", "Science", "Health", "Sport", "Culture", "Opinion"]
FIRST_NAMES = ["Maria", "James", "Aisha", "Tomasz", "Elena", "David", "Priya", "Kwame", "Sofia", "Liam", "Hannah"]
LAST_NAMES = ["Okafor", "Lindqvist", "Moreau", "Castillo", "Brennan", "Nakamura", "Haddad", "Kowalski", "Reyes"]
BEATS = ["local politics", "the economy", "health care", "climate and energy", "technology", "courts and crime"]
COMMENTERS = ["riverwalker", "JaneInOhio", "old_timer_62", "mkfan", "TruthSeeker", "Bea M.", "localdad", "quietreader"]

COOKIE = [
    "We use cookies to personalise content and ads, to provide social media features and to analyse our traffic.",
    "By continuing to browse this site you agree to our use of cookies.",
    "You can change your cookie settings at any time by visiting our privacy centre.",
    "Some cookies are necessary for the site to work and cannot be switched off.",
    "We also share information about your use of our site with our advertising and analytics partners.",
    "Click accept to continue, or manage your preferences to choose which cookies we may set.",
    "Your privacy matters to us, and we only collect the data we need to run this website.",
]
NEWSLETTER = [
    "Sign up for our newsletter to get the latest stories delivered to your inbox every morning.",
    "Get the day's most important headlines in a single email, free of charge.",
    "Our editors pick the best reporting of the week and send it to you every Friday.",
    "You can unsubscribe at any time by clicking the link at the bottom of any email.",
    "By signing up you agree to our terms of service and acknowledge our privacy policy.",
    "Join more than two hundred thousand readers who start their day with our morning briefing.",
    "Never miss a breaking news alert again with our free daily digest.",
    "Subscribe today for unlimited access to our award-winning local journalism.",
]
SPONSORED = [
    "Homeowners are switching to this new kind of solar panel that pays for itself.",
    "Doctors are surprised by this simple habit that helps people sleep through the night.",
    "These ten retirement towns have the lowest cost of living in the country.",
    "Drivers who have not had an accident in three years should check this new insurance rule.",
    "This clever kitchen gadget is selling out everywhere before the holidays.",
    "Travelers are booking these hidden beach resorts before prices go up.",
    "A new hearing aid that is almost invisible is changing lives for seniors.",
    "Experts reveal the three stocks they would buy before the end of the year.",
    "People born before 1970 may be eligible for a new government benefit.",
    "You will not believe what this forgotten childhood star looks like today.",
]
COMMENT_SENTENCES = [
    "I have lived here for twenty years and never seen anything like this.",
    "This is exactly why people have stopped trusting the people in charge.",
    "Thank you for reporting on this, nobody else seems to be covering it.",
    "Does anyone know whether the meeting next week will be open to the public?",
    "My neighbour said the same thing happened back in the nineties.",
    "The article leaves out the most important part of the story.",
    "I drove past there this morning and the traffic was terrible.",
    "Great reporting, but the headline is a little misleading.",
    "We need more coverage like this and less celebrity gossip.",
    "Can someone explain how this is going to affect ordinary families?",
    "I wrote to my representative about this last year and never heard back.",
    "Sad to read this, my thoughts go out to everyone who was affected.",
    "Honestly I am not surprised at all given how things have been going.",
    "It would be helpful if the reporter had asked the other side for a comment.",
    "Let's wait and see what the investigation finds before jumping to conclusions.",
    "My kids go to school nearby and we are all worried about what comes next.",
    "This has been a problem for years and nothing ever changes.",
    "Who is going to pay for all of this in the end?",
    "I remember when this town was quiet and everybody knew each other.",
    "Sharing this with my book club because we were just talking about it.",
    "The comments here are more informative than most television news.",
    "People should read the whole report before making up their minds.",
]
FOOTER = [
    "This material may not be published, broadcast, rewritten or redistributed without written permission.",
    "Use of this site constitutes acceptance of our user agreement and privacy policy.",
    "Our journalists follow the editors' code of practice and we take complaints seriously.",
    "If you have a complaint about our coverage, please contact the readers' editor.",
    "Advertising partners do not influence our editorial decisions in any way.",
    "Market data is provided for informational purposes only and may be delayed by fifteen minutes.",
    "We may earn a commission when you buy products through links on our site.",
    "Registered office and company details are available on our corporate information page.",
]
BIO = [
    "{name} is a reporter covering {beat} for {site}.",
    "{name} joined {site} in 2015 after a decade of reporting on {beat}.",
    "Before joining the newsroom, {first} worked as a freelance correspondent in three countries.",
    "You can reach {first} with story tips by email or on social media.",
    "{first} is a graduate of the state university's school of journalism.",
]
SHARE_LABELS = ["Share", "Facebook", "Twitter", "LinkedIn", "WhatsApp", "Email", "Copy link", "Print"]
MENU = ["Home", *SECTIONS, "Podcasts", "Video", "Weather", "Obituaries", "Puzzles"]


@dataclass
class Page:
    html: str
    article_sentences: list[str]
    boilerplate_sentences: list[str]
    title: str
    published: dt.date | None
    url: str
    author: str | None = None
    site_name: str = ""
    paragraphs: list[str] = field(default_factory=list)
    """The article's paragraphs as the page shows them, in order."""
    template: str = ""


@lru_cache(maxsize=1)
def _corpus_articles() -> tuple[dict[str, Any], ...]:
    usable: list[dict[str, Any]] = []
    seen: set[str] = set()
    with CORPUS.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            text, title = record.get("text") or "", (record.get("title") or "").strip()
            key = title.lower()
            if not (MIN_CHARS <= len(text) <= MAX_CHARS and title and record.get("publish_date")) or key in seen:
                continue
            seen.add(key)
            usable.append(record)
    return tuple(usable)


def real_articles(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` distinct real news articles (RealTime QA records: `title`, `text`, `publish_date`, `url`, ...) with
    a title, a date and at least `MIN_CHARS` characters of text, chosen at random but reproducibly."""
    pool = _corpus_articles()
    if n > len(pool):
        raise ValueError(f"only {len(pool)} usable articles in {CORPUS}")
    return [dict(record) for record in random.Random(seed).sample(pool, n)]


def article_date(article: dict[str, Any]) -> dt.date:
    year, month, day = (int(part) for part in re.split(r"[/-]", article["publish_date"])[:3])
    return dt.date(year, month, day)


def article_paragraphs(article: dict[str, Any]) -> list[str]:
    """The article's paragraphs: its blank-line separated blocks, each line a paragraph of its own."""
    return [" ".join(line.split()) for line in article["text"].splitlines() if line.strip()]


def sentences(paragraphs: list[str]) -> list[str]:
    """Sentences as the chunker splits them, which is what a reader is shown and cited from."""
    return [paragraph[s:e] for paragraph in paragraphs for s, e in split_sentences(paragraph)]


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _with_link(paragraph: str, rng: random.Random) -> str:
    """Escaped paragraph HTML, sometimes with a few words linked or emphasised, as edited copy has."""
    words = paragraph.split(" ")
    if len(words) < 8 or rng.random() < 0.6:
        return _esc(paragraph)
    start = rng.randrange(0, len(words) - 3)
    end = start + rng.randint(1, 3)
    inner = _esc(" ".join(words[start:end]))
    tag = f'<a href="/topic/{rng.randint(100, 999)}">{inner}</a>' if rng.random() < 0.7 else f"<em>{inner}</em>"
    before, after = _esc(" ".join(words[:start])), _esc(" ".join(words[end:]))
    return " ".join(part for part in (before, tag, after) if part)


class _Clutter:
    """The boilerplate of one page, recording every sentence it hands out."""

    def __init__(self, rng: random.Random, site: str, related: list[str]) -> None:
        self.rng = rng
        self.site = site
        self.related = related
        self.sentences: list[str] = []

    def pick(self, pool: list[str], low: int, high: int) -> list[str]:
        chosen = self.rng.sample(pool, self.rng.randint(low, high))
        self.sentences.extend(chosen)
        return chosen

    def menu(self) -> str:
        items = "".join(f'<li><a href="/{_esc(m.lower())}">{_esc(m)}</a></li>' for m in MENU)
        return f'<ul class="menu">{items}</ul>'

    def cookie_banner(self) -> str:
        text = " ".join(self.pick(COOKIE, 2, 3))
        return (
            '<div id="cookie-consent" class="cookie-banner" role="dialog">'
            f"<p>{_esc(text)}</p><button>Accept all</button><button>Manage preferences</button></div>"
        )

    def ad(self) -> str:
        return (
            '<div class="ad-slot"><span class="ad-label">Advertisement</span>'
            f'<div id="gpt-ad-{self.rng.randint(1000, 9999)}"></div></div>'
        )

    def sponsored(self) -> str:
        items = "".join(
            f'<li><a href="https://ads.example/c?id={self.rng.randint(10**5, 10**6)}">{_esc(s)}</a>'
            f'<span class="sponsor">Sponsored</span></li>'
            for s in self.pick(SPONSORED, 2, 4)
        )
        return f'<div class="sponsored-links"><h3>Sponsored stories</h3><ul>{items}</ul></div>'

    def newsletter(self, tag: str = "aside") -> str:
        text = self.pick(NEWSLETTER, 1, 2)
        paras = "".join(f"<p>{_esc(s)}</p>" for s in text)
        return (
            f'<{tag} class="newsletter-signup"><h3>Morning Briefing</h3>{paras}'
            '<form action="/subscribe"><input type="email" placeholder="Your email address">'
            "<button>Sign up</button></form></" + tag + ">"
        )

    def inline_related(self) -> str:
        """A "Related" teaser between paragraphs, as CNN and USA Today put them inside the story."""
        headline = self.rng.choice(self.related)
        self.sentences.append(headline)
        label = self.rng.choice(["Related", "Read more", "See also"])
        return (
            f'<div class="related-inline"><span class="label">{label}</span>'
            f'<a href="/news/{self.rng.randint(10**4, 10**5)}">{_esc(headline)}</a></div>'
        )

    def figure(self) -> str:
        """A photo with a credit: article furniture, recorded as neither article nor boilerplate."""
        credit = f"{self.rng.choice(FIRST_NAMES)} {self.rng.choice(LAST_NAMES)}/{self.rng.choice(['AP', 'Reuters'])}"
        return (
            f'<figure class="lead-image"><img src="/img/{self.rng.randint(1, 9999)}.jpg" alt="">'
            f'<figcaption><span class="credit">{_esc(credit)}</span></figcaption></figure>'
        )

    def video(self) -> str:
        return '<div class="video-player"><span>Now playing</span><button>Play</button><span>02:14</span></div>'

    def share(self) -> str:
        labels = self.rng.sample(SHARE_LABELS, self.rng.randint(3, 6))
        links = "".join(f'<a class="share-{_esc(x.lower())}" href="#">{_esc(x)}</a>' for x in labels)
        return f'<div class="share-buttons">{links}</div>'

    def related_list(self, heading: str, css: str) -> str:
        headlines = self.rng.sample(self.related, min(len(self.related), self.rng.randint(3, 5)))
        self.sentences.extend(headlines)
        items = "".join(f'<li><a href="/news/{i}">{_esc(h)}</a></li>' for i, h in enumerate(headlines))
        return f'<div class="{css}"><h2>{_esc(heading)}</h2><ul>{items}</ul></div>'

    def bio(self, author: str) -> str:
        first = author.split()[0]
        lines = [
            b.format(name=author, first=first, beat=self.rng.choice(BEATS), site=self.site)
            for b in self.rng.sample(BIO, 2)
        ]
        self.sentences.extend(lines)
        return f'<div class="author-bio"><h4>About the author</h4><p>{_esc(" ".join(lines))}</p></div>'

    def comments(self, semantic: bool) -> str:
        blocks = []
        for _ in range(self.rng.randint(3, 5)):
            said = self.pick(COMMENT_SENTENCES, 2, 3)
            who = self.rng.choice(COMMENTERS)
            ago = f"{self.rng.randint(1, 23)} hours ago"
            blocks.append(
                f'<li class="comment"><div class="comment-author">{_esc(who)}</div>'
                f'<div class="comment-meta">{ago}</div><div class="comment-body"><p>{_esc(" ".join(said))}</p>'
                '</div><a class="reply" href="#">Reply</a></li>'
            )
        tag = "section" if semantic else "div"
        return (
            f'<{tag} id="comments" class="comments"><h3>{len(blocks)} Comments</h3>'
            f'<ol class="comment-list">{"".join(blocks)}</ol></{tag}>'
        )

    def footer(self, semantic: bool, year: int) -> str:
        legal = self.pick(FOOTER, 2, 3)
        links = "".join(
            f'<a href="/{x.lower().replace(" ", "-")}">{x}</a>'
            for x in ("About us", "Contact", "Privacy policy", "Terms of use", "Careers")
        )
        body = f'<div class="footer-links">{links}</div><p>{_esc(" ".join(legal))}</p><p>© {year} {_esc(self.site)}</p>'
        return f"<footer>{body}</footer>" if semantic else f'<div id="footer" class="site-footer">{body}</div>'


def _date_text(day: dt.date, rng: random.Random) -> str:
    return rng.choice(
        [f"{day:%B} {day.day}, {day.year}", f"{day.day} {day:%B} {day.year}", f"{day:%b}. {day.day}, {day.year}"]
    )


def article_page(article: dict[str, Any], url: str, rng: random.Random, *, with_date: bool = True) -> Page:
    """A page presenting `article` at `url` as one of several kinds of news site would. With
    `with_date=False` nothing on the page dates the article (no metadata, no byline date, and the caller
    gives a URL without one); comments say "3 hours ago" and the footer a copyright year, as real pages do."""
    site, _domain = rng.choice(SITES)
    section = rng.choice(SECTIONS)
    author = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    title = " ".join(article["title"].split())
    published = article_date(article) if with_date else None
    paragraphs = article_paragraphs(article)
    related = [r["title"] for r in _corpus_articles()[:400] if r["title"] != article["title"]]
    clutter = _Clutter(rng, site, [" ".join(h.split()) for h in related if len(h.split()) >= 5])
    template = rng.choice(list(_TEMPLATES))
    body = _TEMPLATES[template](_Parts(clutter, site, section, author, title, published, paragraphs, url, rng))
    return Page(
        html=body,
        article_sentences=sentences(paragraphs),
        boilerplate_sentences=clutter.sentences,
        title=title,
        published=published,
        url=url,
        author=author,
        site_name=site,
        paragraphs=paragraphs,
        template=template,
    )


@dataclass
class _Parts:
    clutter: _Clutter
    site: str
    section: str
    author: str
    title: str
    published: dt.date | None
    paragraphs: list[str]
    url: str
    rng: random.Random

    def body(
        self, tag: str, *, ads_every: int = 0, newsletter_at: int | None = None, related_at: int | None = None
    ) -> str:
        """The article paragraphs in `tag` elements, with ad slots, a newsletter box and a related-story
        teaser between them where asked."""
        out = []
        last = len(self.paragraphs) - 1
        for i, paragraph in enumerate(self.paragraphs):
            out.append(f"<{tag}>{_with_link(paragraph, self.rng)}</{tag}>")
            if i == last:
                break
            if ads_every and i % ads_every == ads_every - 1:
                out.append(self.clutter.ad())
            if i == newsletter_at:
                out.append(self.clutter.newsletter("div"))
            if i == related_at:
                out.append(self.clutter.inline_related())
        return "\n".join(out)

    def head(self, *, og: bool, meta_date: bool, canonical: bool, json_ld: bool = False) -> str:
        sep = self.rng.choice([" | ", " - ", " – "])
        lines = [
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_esc(self.title)}{sep}{_esc(self.site)}</title>",
            '<link rel="stylesheet" href="/static/site.css">',
            "<script>window.dataLayer = window.dataLayer || []; function gtag(){dataLayer.push(arguments);}</script>",
            "<style>.ad-slot{min-height:250px} .cookie-banner{position:fixed;bottom:0}</style>",
        ]
        if canonical:
            lines.append(f'<link rel="canonical" href="{_esc(self.url)}">')
        if og:
            lines += [
                f'<meta property="og:title" content="{_esc(self.title)}">',
                f'<meta property="og:site_name" content="{_esc(self.site)}">',
                f'<meta property="og:url" content="{_esc(self.url)}">',
                '<meta property="og:type" content="article">',
                f'<meta name="author" content="{_esc(self.author)}">',
            ]
        if meta_date and self.published:
            stamp = f"{self.published.isoformat()}T{self.rng.randint(6, 18):02d}:{self.rng.randint(0, 59):02d}:00Z"
            lines.append(f'<meta property="article:published_time" content="{stamp}">')
        if json_ld:
            data: dict[str, Any] = {
                "@context": "https://schema.org",
                "@type": "NewsArticle",
                "headline": self.title,
                "author": {"@type": "Person", "name": self.author},
                "publisher": {"@type": "Organization", "name": self.site},
                "mainEntityOfPage": self.url,
            }
            if self.published:
                data["datePublished"] = f"{self.published.isoformat()}T08:00:00+00:00"
            lines.append(f'<script type="application/ld+json">{json.dumps(data)}</script>')
        return "<head>\n" + "\n".join(lines) + "\n</head>"

    def time_tag(self) -> str:
        if not self.published:
            return ""
        return f'<time datetime="{self.published.isoformat()}T09:30:00Z">{_date_text(self.published, self.rng)}</time>'

    @property
    def year(self) -> int:
        return (self.published or dt.date(2022, 1, 1)).year


def _semantic(p: _Parts) -> str:
    """A modern news site: `<header>`/`<nav>`/`<main>`/`<article>`/`<footer>`, full metadata in the head."""
    c = p.clutter
    byline = f'<p class="byline">By <a rel="author" href="/authors/x">{_esc(p.author)}</a> {p.time_tag()}</p>'
    return f"""<!DOCTYPE html>
<html lang="en">
{p.head(og=True, meta_date=True, canonical=True)}
<body>
{c.cookie_banner()}
<header class="site-header"><a class="logo" href="/">{_esc(p.site)}</a><nav>{c.menu()}</nav>
<a class="subscribe" href="/subscribe">Subscribe</a></header>
{c.ad()}
<main>
<article>
<header><a class="kicker" href="/{p.section.lower()}">{_esc(p.section)}</a><h1>{_esc(p.title)}</h1>
{byline}{c.share()}</header>
{c.figure()}
<div class="article-body">
{p.body("p", ads_every=4, newsletter_at=5, related_at=2)}
</div>
{c.share()}
</article>
{c.bio(p.author)}
<aside class="related">{c.related_list("Related articles", "related-articles")}</aside>
{c.sponsored()}
{c.comments(semantic=True)}
</main>
<aside class="sidebar">{c.related_list("Most read", "most-read")}{c.newsletter()}</aside>
{c.footer(semantic=True, year=p.year)}
<script src="/static/app.js"></script>
</body>
</html>"""


def _divs(p: _Parts) -> str:
    """An older CMS: nothing but `<div>`s, paragraphs included; the date only in a `<time>` in the byline."""
    c = p.clutter
    paragraphs = p.body("div", ads_every=5, related_at=3)
    return f"""<html>
{p.head(og=False, meta_date=False, canonical=False)}
<body>
<div id="wrapper">
<div id="top"><div class="logo">{_esc(p.site)}</div>{c.menu()}</div>
{c.cookie_banner()}
<div id="content">
<div class="breadcrumbs"><a href="/">Home</a> &gt; <a href="/{p.section.lower()}">{_esc(p.section)}</a></div>
<div class="story">
<div class="story-headline"><h1>{_esc(p.title)}</h1></div>
<div class="story-meta"><span class="author">By {_esc(p.author)}</span> {p.time_tag()}</div>
{c.share()}
{c.video()}
<div class="story-body">
{paragraphs}
</div>
</div>
{c.related_list("You may also like", "related-stories")}
{c.sponsored()}
{c.comments(semantic=False)}
</div>
<div id="sidebar">{c.newsletter("div")}{c.related_list("Trending now", "trending")}</div>
{c.footer(semantic=False, year=p.year)}
</div>
</body>
</html>"""


def _blog(p: _Parts) -> str:
    """A WordPress-style site: `entry-content`, JSON-LD metadata and `article:published_time`, a canonical."""
    c = p.clutter
    when = f'<span class="posted-on">{_date_text(p.published, p.rng)}</span>' if p.published else ""
    return f"""<!doctype html>
<html lang="en-US">
{p.head(og=p.rng.random() < 0.5, meta_date=True, canonical=True, json_ld=True)}
<body class="post-template-default single single-post">
<div id="page" class="site">
<header id="masthead" class="site-header"><p class="site-title"><a href="/">{_esc(p.site)}</a></p>
<nav id="site-navigation" class="main-navigation">{c.menu()}</nav></header>
{c.cookie_banner()}
<div id="content" class="site-content"><div id="primary" class="content-area">
<article class="post type-post status-publish">
<header class="entry-header"><h1 class="entry-title">{_esc(p.title)}</h1>
<div class="entry-meta">{when} <span class="byline">by {_esc(p.author)}</span></div></header>
<div class="entry-content">
{c.figure()}
{p.body("p", ads_every=6, related_at=4)}
</div>
<footer class="entry-footer"><span class="cat-links">Posted in {_esc(p.section)}</span>
<span class="tags-links">Tagged <a href="/tag/a">{_esc(p.section.lower())}</a>, <a href="/tag/b">local</a></span>
{c.share()}</footer>
</article>
{c.bio(p.author)}
<nav class="post-navigation"><a href="/prev">Previous post</a> <a href="/next">Next post</a></nav>
{c.comments(semantic=False)}
</div>
<aside id="secondary" class="widget-area">{c.newsletter()}{c.related_list("Recent posts", "widget_recent_entries")}
{c.sponsored()}</aside>
</div>
{c.footer(semantic=True, year=p.year)}
</div>
</body>
</html>"""


def _magazine(p: _Parts) -> str:
    """A magazine layout: `<main>` without `<article>`, paragraphs in `<p>` inside `<section>`s, a
    "Published" line in plain text plus `article:published_time`, sponsored links inside the story."""
    c = p.clutter
    half = max(1, len(p.paragraphs) // 2)
    first, second = p.paragraphs[:half], p.paragraphs[half:]
    part = "\n".join(f"<p>{_with_link(x, p.rng)}</p>" for x in first)
    rest = "\n".join(f"<p>{_with_link(x, p.rng)}</p>" for x in second)
    published = f'<div class="dateline">Published {_date_text(p.published, p.rng)}</div>' if p.published else ""
    return f"""<!DOCTYPE html>
<html lang="en">
{p.head(og=True, meta_date=True, canonical=p.rng.random() < 0.5)}
<body>
<div class="topbar"><a href="/">{_esc(p.site)}</a><nav aria-label="Sections">{c.menu()}</nav>
<a href="/login">Sign in</a></div>
{c.cookie_banner()}
<main id="main-content">
<div class="hero"><span class="section-label">{_esc(p.section)}</span><h1 class="headline">{_esc(p.title)}</h1>
<div class="contributors">Words by {_esc(p.author)}</div>{published}</div>
{c.share()}
<div class="story-text">
<section class="body-part">{part}</section>
{c.ad()}
{c.sponsored()}
<section class="body-part">{rest}</section>
</div>
{c.newsletter("div")}
{c.related_list("More from " + p.section, "more-stories")}
{c.comments(semantic=True)}
</main>
{c.footer(semantic=True, year=p.year)}
</body>
</html>"""


def _regional(p: _Parts) -> str:
    """A regional paper: `<article>` holding `<div>` paragraphs, a byline with a `<time>` and no metadata."""
    c = p.clutter
    return f"""<!DOCTYPE html>
<html>
{p.head(og=False, meta_date=False, canonical=True)}
<body>
<div class="masthead"><h2 class="paper-name">{_esc(p.site)}</h2><div class="nav-bar">{c.menu()}</div></div>
{c.ad()}
<div class="layout">
<div class="col-main">
<article class="news-article">
<h1>{_esc(p.title)}</h1>
<div class="byline-block">By {_esc(p.author)}, {_esc(p.site)} {p.time_tag()}</div>
<div class="text-block">
{p.body("div", ads_every=3, newsletter_at=2)}
</div>
</article>
{c.share()}
{c.related_list("Related coverage", "related")}
{c.comments(semantic=False)}
</div>
<div class="col-side">{c.sponsored()}{c.newsletter("div")}{c.related_list("Most popular", "popular")}</div>
</div>
{c.cookie_banner()}
{c.footer(semantic=False, year=p.year)}
</body>
</html>"""


_TEMPLATES = {
    "semantic": _semantic,
    "divs": _divs,
    "blog": _blog,
    "magazine": _magazine,
    "regional": _regional,
}
