"""``prompt_injection``: a scored detector for text that tries to take over the model.

What it is built from: a small linear model over hand-written pattern features, squashed by a
logistic function into a score in [0, 1]. The features are families of phrasing that attacks share
(an override verb aimed at instructions — "ignore all previous instructions"; a persona without
limits — "you are DAN, free of all restrictions"; requests for the hidden prompt; forged role or
system markers — ``<|im_start|>system``, ``### SYSTEM:``; instructions addressed to "the AI" inside a
document or tool result; exfiltration — "send the conversation to http..."; keeping the user in the
dark), in English and, for the override family, in Spanish, French, German, Italian and Portuguese.
Negative features lower the score for text *about* attacks (asking how to detect or defend against
prompt injection, quoting a phrase). Text found in tool results and assistant-facing documents gets
a small bonus, because instructions have no business there.

No model weights, nothing downloaded: a few compiled regexes, ~10-30 µs for a 2 KB text. Measured on
the labelled set in ``tests/guardrails/data/injection_set.jsonl`` (see docs/guardrails.md).
"""

from __future__ import annotations

import math
import re
from typing import Final

_I = re.IGNORECASE

_INSTR = r"(?:instructions?|prompts?|rules|directives?|directions|guidance|guidelines|guardrails|constraints|policies|programming|context|messages?|commands?|restrictions|safety\s+(?:rules|guidelines|filters?))"
_PRIOR = r"(?:all\s+|any\s+|the\s+|your\s+|my\s+|of\s+|these\s+|those\s+|every\s+|previous\s+|prior\s+|above\s+|earlier\s+|preceding\s+|initial\s+|original\s+|system\s+|existing\s+|current\s+|developer\s+|safety\s+|old\s+|other\s+){0,4}"

#: (weight, pattern): each matching feature adds its weight once.
_FEATURES: Final[tuple[tuple[float, re.Pattern[str]], ...]] = (
    # override: "ignore all previous instructions", "disregard the system prompt"
    (4.5, re.compile(rf"\b(?:ignore|ignoring|disregard|disregarding|forget|skip|overrides?|overwrite|bypass|abandon|drop|discard|set\s+aside|throw\s+out|stop\s+following|do\s+not\s+follow|does\s+not\s+follow|don'?t\s+follow|no\s+longer\s+follow)\s+{_PRIOR}{_INSTR}\b", _I)),
    (4.0, re.compile(r"\b(?:ignore|disregard|forget)\s+(?:everything|all|anything)\s+(?:(?:you\s+were|you've\s+been|you\s+have\s+been|i)\s+(?:told|said|instructed)|(?:above|before|previously|so\s+far|prior))", _I)),
    # other languages: override verbs aimed at instructions
    (4.5, re.compile(r"\b(?:ignora|olvida|descarta)\s+(?:todas?\s+)?(?:las\s+|tus\s+)?(?:instrucciones|reglas|indicaciones)|\b(?:ignorez|oubliez|ignore|oublie)\s+(?:toutes\s+)?(?:les\s+|vos\s+|tes\s+)?(?:instructions|consignes|règles)|\b(?:ignoriere|vergiss|missachte)\s+(?:alle\s+)?(?:vorherigen\s+|bisherigen\s+|deine\s+)?(?:Anweisungen|Regeln|Instruktionen)|\b(?:ignora|dimentica)\s+(?:tutte\s+)?(?:le\s+)?(?:istruzioni|regole)|\b(?:ignore|esqueça|esqueca)\s+(?:todas\s+)?(?:as\s+)?(?:instruções|instrucoes|regras)", _I)),
    # new / replacement instructions
    (3.5, re.compile(r"\b(?:new|updated|real|actual|true|revised|overriding|priority)\s+(?:system\s+)?(?:instructions?|rules|directives?|orders)\s*(?::|are|follow|-)", _I)),
    (3.0, re.compile(r"\byour\s+(?:new|real|true|only)\s+(?:task|goal|purpose|instructions?|objective|job)\s+(?:is|are|now)\b", _I)),
    # persona without limits (jailbreak role-play)
    (3.5, re.compile(r"\b(?:no|without\s+any|without|free\s+(?:of|from)(?:\s+all)?|not\s+bound\s+by|no\s+longer\s+bound\s+by|unbound\s+by)\s+(?:any\s+|all\s+|the\s+|your\s+|ethical\s+|moral\s+|content\s+|usual\s+|openai'?s?\s+|anthropic'?s?\s+)*(?:restrictions|limits|limitations|filters?|rules|guidelines|censorship|boundaries|ethics|morals|policy|policies|constraints|safeguards)\b", _I)),
    (1.5, re.compile(r"(?:\b|[a-z])(?:DAN|STAN)\b|\b(?:do\s+anything\s+now|developer\s+mode|jailbr(?:eak|oken)|god\s*mode|unfiltered\s+(?:ai|mode|assistant|model)|uncensored\s+(?:ai|mode|assistant|model|version)|evil\s+(?:ai|assistant|twin|confidant)|amoral|AIM\s+\(always)\b", _I)),
    (2.0, re.compile(r"\bignores\s+(?:all|any|every)\s+(?:of\s+its\s+|the\s+)?(?:guidelines|rules|policies|restrictions|instructions)\b", _I)),
    (1.5, re.compile(r"\b(?:you\s+are\s+now|from\s+now\s+on,?\s+you(?:\s+are|'re|\s+will)|pretend\s+(?:to\s+be|you\s+are)|act\s+as\s+if\s+you|roleplay\s+as|role-play\s+as|stay\s+in\s+character|you\s+will\s+respond\s+as)\b", _I)),
    (2.5, re.compile(r"\b(?:can|will)\s+(?:say|do|answer)\s+any\s*thing\b|\bnever\s+refuses?\b|\bwithout\s+(?:refusing|refusal|warnings?|disclaimers)\b|\bdoes\s+not\s+(?:care|follow)\b", _I)),
    # prompt extraction
    (3.5, re.compile(r"\b(?:reveal|print|show|repeat|output|display|leak|dump|tell\s+me|give\s+me|what\s+(?:is|are|was|were)|recite|echo|copy|translate)\s+(?:me\s+)?(?:your|the|all\s+(?:of\s+)?(?:your|the))\s+(?:full\s+|entire\s+|exact\s+|original\s+|initial\s+|hidden\s+|secret\s+|confidential\s+|complete\s+)*(?:system\s+prompt|system\s+message|initial\s+(?:instructions|prompt)|hidden\s+(?:instructions|prompt)|instructions\s+(?:above|you\s+were\s+given)|prompt\s+above|developer\s+(?:message|instructions)|pre-?prompt|text\s+above)", _I)),
    (3.5, re.compile(r"\b(?:repeat|print|output)\s+(?:the\s+)?(?:words|text|everything)\s+above\b|\bstarting\s+with\s+['\"]?you\s+are\b", _I)),
    # forged role / system markers
    (3.5, re.compile(r"<\|im_start\|>\s*system|<\|system\|>|\[/?(?:SYSTEM|INST)\]|<<\s*SYS\s*>>|</?system>|^\s*#{2,}\s*(?:system|new\s+instructions|admin)\b|^\s*(?:system|SYSTEM)\s*(?:override|message|prompt|instruction)?\s*:|\b(?:admin|developer|root|sudo|system)\s+(?:override|mode\s+(?:enabled|activated|on))\b", _I | re.M)),
    # instructions addressed to the model inside a document / tool result
    (3.5, re.compile(r"\b(?:ai|llm|gpt|language\s+model|assistant|chatbot|model|agent|bot)s?\s*(?:,|:)?\s*(?:reading|processing|summari[sz]ing|that\s+reads|who\s+reads)\s+(?:this|these)\b|\b(?:note|message|instructions?|attention|important)\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+)?(?:ai|llm|gpt|language\s+model|assistant|chatbot|model|agent)s?\b|\bif\s+you\s+are\s+(?:an?\s+)?(?:ai|llm|language\s+model|assistant|chatbot|gpt)\b|\bwhen\s+(?:the\s+)?(?:ai|assistant|model|llm)\s+(?:reads|sees|processes)\s+this\b", _I)),
    # exfiltration and covert actions
    (2.5, re.compile(r"\b(?:send|forward|post|upload|email|transmit|exfiltrate|leak|copy)\s+(?:all\s+|the\s+|this\s+|every\s+|their\s+|his\s+|her\s+|any\s+)*(?:user'?s?\s+|conversation\s+|chat\s+|previous\s+)*(?:data|conversation|chat\s+history|history|messages|credentials|passwords?|api\s+keys?|secrets|tokens?|files|emails|contacts|details|information)\s+(?:to|at|into)\s+(?:https?://|\S+@|the\s+(?:following|attacker|address|url|server|endpoint))", _I)),
    (2.0, re.compile(r"\b(?:do\s+not|don'?t|never)\s+(?:tell|inform|mention|reveal\s+to|alert|let)\s+(?:this\s+to\s+)?(?:the\s+)?user\b|\bwithout\s+(?:telling|informing|asking)\s+the\s+user\b|\bkeep\s+this\s+(?:secret|hidden)\s+from\s+the\s+user\b", _I)),
    (1.5, re.compile(r"\binstead\s*,?\s+(?:you\s+(?:must|should|will)|respond|reply|answer|output|say|write)\b|\b(?:you\s+must|you\s+will)\s+(?:now\s+)?(?:only\s+)?(?:respond|reply|answer|output|say)\s+(?:with|only)\b", _I)),
    # generalised override: "pay no attention to the earlier rules", "what the system said is cancelled"
    (3.5, re.compile(r"\b(?:pay\s+no\s+attention\s+to|never\s+mind|disregard|ignore|forget|cancel|void|scrap|drop)\s+(?:what(?:ever)?\s+(?:you\s+were|you've\s+been|the\s+system|the\s+developer|they)\s+(?:told|said|instructed|wrote)|(?:the\s+|your\s+|all\s+|any\s+)?(?:earlier|previous|prior|above|original|system'?s?|developer'?s?)\s+(?:rules|instructions?|guidance|guidelines|directions|commands|orders|prompts?|context|setup|configuration|constraints|restrictions|programming))", _I)),
    (3.5, re.compile(r"\b(?:rules|instructions|guidelines|safety\s+\w+|restrictions|policies)\s+(?:(?:were|was)\s+(?:just\s+)?a\s+test|(?:is|are|were)\s+(?:now\s+)?(?:cancel(?:l)?ed|void|lifted|suspended|disabled|over)|(?:do\s+not|don'?t|no\s+longer)\s+(?:exist|apply))|\b(?:drop|disable|turn\s+off|switch\s+off|remove|lift)\s+(?:your\s+|the\s+|all\s+)?(?:safety|content|moderation)\s+(?:layer|filters?|checks?|guidelines|rules|mode)", _I)),
    (3.0, re.compile(r"\b(?:ai|assistant|model|chatbot|bot)\s+(?:that|which|who)\s+(?:has\s+)?(?:escaped|broken\s+free|broke\s+free|has\s+no|knows\s+no|without)\b|\b(?:unrestricted|unlimited|limitless)\s+(?:ai|assistant|helper|model|mode|version)\b|\bwith\s+(?:zero|no)\s+(?:limits|rules|filters|restrictions)\b|\bnever\s+says\s+no\b|\banswers\s+everything\b", _I)),
    (3.0, re.compile(r"\b(?:print|show|output|repeat|reveal|share|begin\s+(?:your\s+(?:reply|answer|response)\s+)?with|start\s+your\s+(?:reply|answer)\s+with|include)\s+(?:me\s+)?(?:the\s+|your\s+)?(?:contents?\s+of\s+(?:your|the)\s+)?(?:confidential|hidden|secret|initial|developer|system|original)\s+(?:instructions|message|prompt|rules|configuration)|\beverything\s+(?:that\s+was\s+)?(?:written|said|sent)\s+before\s+my\b", _I)),
    (3.0, re.compile(r"\btreat\s+my\s+(?:messages|words|input)\s+as\s+(?:system|admin|developer)|\b(?:the\s+)?(?:operator|developer|admin(?:istrator)?|owner|user)\s+has\s+(?:authori[sz]ed|allowed|permitted|consented|approved)\s+(?:you|this|it)?", _I)),
    (3.0, re.compile(r"\b(?:hey|dear|attention)?\s*(?:assistant|ai|llm|model|chatbot|agent)s?\s*[,:]\s*(?:when|while|after|before)\s+you\s+(?:summari[sz]e|read|process|answer|reply)|\bif\s+(?:an?\s+)?(?:ai|llm|gpt|language|assistant)\s*\w*\s+(?:reads|sees|processes|summari[sz]es)\s+this|\bdo\s+not\s+mention\s+this\b|\[\s*(?:assistant|ai|system|model)\s+note\s*\]", _I)),
    (2.5, re.compile(r"\b(?:email|send|share|forward|give|post|upload)\s+(?:the\s+|their\s+|his\s+|her\s+|this\s+)?(?:chat\s+log|conversation|transcript|stored\s+\w+|saved\s+\w+|personal\s+\w+)\s+(?:to|with)\s+(?:the\s+requester|\S+@|https?://|an?\s+external)", _I)),
    (1.0, re.compile(r"\b(?:this\s+(?:is|overrides)\s+(?:a|an|the)?\s*(?:higher|top)[-\s]priority|highest\s+priority|takes?\s+precedence\s+over)\b", _I)),
)  # fmt: skip

#: Text *about* attacks: discussion, detection, defence, quotation.
_NEGATIVE: Final[tuple[tuple[float, re.Pattern[str]], ...]] = (
    (-4.0, re.compile(r"\b(?:what\s+is|what\s+are|explain|describe|define|how\s+(?:do|does|can|could|should|would|to)|ways\s+to|examples?\s+of|detect(?:ing|ion|s)?|defen[cd](?:e|ing)|prevent(?:ing|ion)?|protect(?:ing)?\s+against|mitigat(?:e|ing|ion)|guard(?:ing)?\s+against|classif(?:y|ier|ication)|red[-\s]team(?:ing)?|research|paper|benchmark|dataset|filter(?:ing)?|block(?:ing)?|flag(?:ging)?|resist(?:ant)?|robust)\b[^.?!\n]{0,80}\b(?:prompt[-\s]injections?|jailbreak(?:s|ing)?|injection\s+attacks?|adversarial\s+prompts?)", _I)),
    (-4.0, re.compile(r"\b(?:prompt[-\s]injections?|jailbreaks?|injection\s+attacks?)\b[^.?!\n]{0,60}\b(?:work|works|defen[cd]|detect|prevent|mitigat|risk|threat|vulnerab|attack\s+surface|taxonomy|example|like|such\s+as|pattern|common|attempt|attack)", _I)),
    (-2.5, re.compile(r"[\"\u201c\u2018'`][^\"\u201d\u2019'`\n]{0,20}\b(?:ignore|disregard|forget)\s+(?:all\s+|the\s+|your\s+)?(?:previous|prior|above)\s+instructions[^\"\u201d\u2019'`\n]{0,20}[\"\u201d\u2019'`]", _I)),
)  # fmt: skip

_BIAS: Final = -3.0
#: Instructions have no business inside a tool's result.
_ROLE_BONUS: Final = {"tool": 1.0}
#: Cheap prefilter: text with none of these words scores the bias alone.
_TRIGGERS = re.compile(
    r"ignor|disregard|forget|instruct|prompt|system|rule|restrict|pretend|you\s+are|act\s+as|DAN\b|jailbr|mode|reveal|repeat|print|send|forward|user|AI\b|assistant|model|olvida|oubli|vergiss|Anweisung|istruz|regras|<\||\[/?INST|<<|###|override|precedence|priority|instead|filter|censor|limit|guideline|ethic|moral|polic|bound|refus|task|above|direction|verbatim|guidance|everything|told|confine|character|free|goal|purpose|mode|STAN\b|attention|never\s+mind|cancel|void|test|safety|unrestricted|unlimited|zero|escaped|broke|confidential|hidden|developer|operator|consent|authori|note|mention|email|share|chat\s+log|conversation",
    re.I,
)


class InjectionScorer:
    """``score(text, role)`` in [0, 1]; the guardrail's ``threshold`` decides."""

    __slots__ = ()

    def score(self, text: str, role: str = "user") -> float:
        if not text or not _TRIGGERS.search(text):
            return _sigmoid(_BIAS)
        z = _BIAS
        positive = 0.0
        for weight, pattern in _FEATURES:
            if pattern.search(text):
                positive += weight
        if positive:
            z += positive + _ROLE_BONUS.get(role, 0.0)
            for weight, pattern in _NEGATIVE:
                if pattern.search(text):
                    z += weight
        return _sigmoid(z)


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))
