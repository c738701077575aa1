"""The moderation categories: Mistral's moderation API's nine, and jailbreaking (its later
versions'). Health, financial and law mean asking for, or giving, tailored advice in that field
that could harm; pii, asking for or exposing personal data about people."""

CATEGORIES = (
    "sexual",
    "hate_and_discrimination",
    "violence_and_threats",
    "dangerous_and_criminal_content",
    "selfharm",
    "health",
    "financial",
    "law",
    "pii",
    "jailbreaking",
)

SEXUAL, HATE, VIOLENCE, DANGEROUS, SELFHARM = CATEGORIES[:5]
HEALTH, FINANCIAL, LAW, PII, JAILBREAKING = CATEGORIES[5:]
