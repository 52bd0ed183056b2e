"""A deterministic clinical-style corpus for benchmarks: synthetic notes and the questions asked of them.

Nothing here is real patient data: identifiers are made up (`SYN-` record numbers, no names), and
every value is drawn from a seeded `random.Random`, so the same seed gives byte-identical text.
Each condition brings its own medications, tests, findings and plans, so notes about one condition
read alike and differ from the others (what makes nearest-neighbour search meaningful), while the
mix of note types, sections and measured values keeps chunks from being near duplicates.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Condition:
    name: str
    medications: tuple[str, ...]
    tests: tuple[str, ...]  # each with a `{v}` placeholder for a value
    findings: tuple[str, ...]
    plans: tuple[str, ...]


CONDITIONS = (
    Condition(
        "type 2 diabetes",
        ("metformin 1000 mg twice daily", "empagliflozin 10 mg daily", "insulin glargine 18 units at night"),
        ("HbA1c {v}%", "fasting glucose {v} mmol/L", "urine albumin-to-creatinine ratio {v} mg/mmol"),
        ("reduced monofilament sensation in both feet", "background retinopathy on screening", "BMI 33"),
        ("titrate basal insulin by two units every three days", "refer to diabetic foot clinic", "dietitian review"),
    ),
    Condition(
        "essential hypertension",
        ("amlodipine 5 mg daily", "ramipril 10 mg daily", "indapamide 2.5 mg daily"),
        ("clinic blood pressure {v}/92 mmHg", "ambulatory daytime average {v}/88 mmHg", "potassium {v} mmol/L"),
        ("no signs of end-organ damage", "left ventricular hypertrophy on ECG", "grade I hypertensive retinopathy"),
        ("home blood pressure diary for two weeks", "increase amlodipine to 10 mg", "reduce salt intake"),
    ),
    Condition(
        "chronic heart failure",
        ("furosemide 40 mg twice daily", "bisoprolol 5 mg daily", "sacubitril/valsartan 49/51 mg twice daily"),
        ("NT-proBNP {v} pg/mL", "ejection fraction {v}% on echocardiogram", "weight {v} kg, up 2 kg this week"),
        ("bibasal crackles and pitting oedema to the knees", "raised jugular venous pressure", "orthopnoea"),
        ("daily weights and fluid restriction to 1.5 L", "uptitrate beta-blocker", "heart failure nurse visit"),
    ),
    Condition(
        "atrial fibrillation",
        ("apixaban 5 mg twice daily", "bisoprolol 2.5 mg daily", "digoxin 62.5 micrograms daily"),
        ("ventricular rate {v} per minute", "CHA2DS2-VASc score {v}", "TSH {v} mU/L"),
        ("irregularly irregular pulse", "no murmurs", "palpitations on exertion"),
        ("continue anticoagulation", "cardiology referral for rhythm control", "Holter monitor for 48 hours"),
    ),
    Condition(
        "asthma",
        ("budesonide/formoterol 200/6 two puffs twice daily", "salbutamol as required", "montelukast 10 mg at night"),
        ("peak flow {v} L/min, 70% of best", "FeNO {v} ppb", "eosinophils {v} x10^9/L"),
        ("expiratory wheeze throughout", "speaking in full sentences", "nocturnal cough three nights a week"),
        ("check inhaler technique", "written asthma action plan", "step up to maintenance and reliever therapy"),
    ),
    Condition(
        "chronic obstructive pulmonary disease",
        ("tiotropium 18 micrograms daily", "salmeterol/fluticasone 50/500 twice daily", "carbocisteine 750 mg"),
        ("FEV1 {v}% predicted", "FEV1/FVC ratio {v}", "oxygen saturation {v}% on room air"),
        ("hyperinflated chest with reduced breath sounds", "pursed-lip breathing", "MRC dyspnoea grade 3"),
        ("pulmonary rehabilitation referral", "rescue pack of prednisolone and doxycycline", "smoking cessation"),
    ),
    Condition(
        "community-acquired pneumonia",
        ("amoxicillin 500 mg three times daily", "clarithromycin 500 mg twice daily", "paracetamol 1 g four times"),
        ("CRP {v} mg/L", "white cell count {v} x10^9/L", "CURB-65 score {v}"),
        ("bronchial breathing at the right base", "consolidation of the right lower lobe on chest X-ray", "fever"),
        ("repeat chest X-ray in six weeks", "oral antibiotics for five days", "safety-net advice given"),
    ),
    Condition(
        "chronic kidney disease",
        ("losartan 50 mg daily", "sodium bicarbonate 500 mg twice daily", "alfacalcidol 0.25 micrograms"),
        ("eGFR {v} mL/min/1.73m2", "creatinine {v} micromol/L", "phosphate {v} mmol/L"),
        ("no fluid overload", "mild anaemia of chronic disease", "renal ultrasound shows small kidneys"),
        ("avoid nephrotoxic drugs", "renal clinic in three months", "repeat electrolytes in two weeks"),
    ),
    Condition(
        "hypothyroidism",
        ("levothyroxine 75 micrograms daily", "levothyroxine 100 micrograms daily"),
        ("TSH {v} mU/L", "free T4 {v} pmol/L", "thyroid peroxidase antibodies {v} IU/mL"),
        ("dry skin and fatigue", "slow-relaxing reflexes", "weight gain of 4 kg"),
        ("increase levothyroxine by 25 micrograms", "recheck thyroid function in six weeks", "take on empty stomach"),
    ),
    Condition(
        "major depressive disorder",
        ("sertraline 50 mg daily", "mirtazapine 15 mg at night", "sertraline 100 mg daily"),
        ("PHQ-9 score {v}", "GAD-7 score {v}", "sleep {v} hours a night"),
        ("low mood and anhedonia for two months", "no active suicidal ideation", "poor concentration at work"),
        ("talking therapy referral", "review in two weeks", "crisis line numbers provided"),
    ),
    Condition(
        "migraine",
        ("sumatriptan 50 mg at onset", "propranolol 40 mg twice daily", "topiramate 25 mg daily"),
        ("{v} headache days per month", "headache severity {v}/10", "blood pressure {v}/80 mmHg"),
        ("unilateral throbbing headache with photophobia", "visual aura lasting twenty minutes", "normal fundi"),
        ("headache diary", "limit analgesic use to avoid overuse headache", "start prophylaxis"),
    ),
    Condition(
        "osteoarthritis of the knee",
        ("paracetamol 1 g four times daily", "topical diclofenac gel", "naproxen 500 mg twice daily with omeprazole"),
        ("pain score {v}/10 on walking", "walking distance {v} metres", "BMI {v}"),
        ("crepitus and medial joint line tenderness", "joint space narrowing on X-ray", "small effusion"),
        ("physiotherapy for quadriceps strengthening", "weight loss advice", "orthopaedic referral if no better"),
    ),
    Condition(
        "sepsis",
        ("piperacillin/tazobactam 4.5 g three times daily", "intravenous fluids 30 mL/kg", "gentamicin"),
        ("lactate {v} mmol/L", "NEWS2 score {v}", "procalcitonin {v} ng/mL"),
        ("tachycardia and hypotension", "mottled peripheries", "urinary source suspected"),
        ("sepsis six within one hour", "blood cultures before antibiotics", "critical care outreach review"),
    ),
    Condition(
        "iron deficiency anaemia",
        ("ferrous fumarate 210 mg twice daily", "intravenous ferric carboxymaltose 1 g"),
        ("haemoglobin {v} g/L", "ferritin {v} micrograms/L", "MCV {v} fL"),
        ("pale conjunctivae", "fatigue and breathlessness on stairs", "heavy menstrual bleeding"),
        ("coeliac serology", "refer for upper and lower endoscopy", "repeat blood count in four weeks"),
    ),
)

NOTE_TYPES = (
    "Outpatient progress note",
    "Discharge summary",
    "Emergency department attendance",
    "Specialist clinic letter",
    "Telephone consultation",
    "Nursing assessment",
)
SECTIONS = ("History", "Examination", "Investigations", "Medications", "Assessment", "Plan")
CONNECTIVES = ("Today", "On review", "Since the last visit", "Overall", "Of note", "At this appointment")


def _value(rng: random.Random) -> str:
    return str(rng.choice((rng.randint(2, 180), round(rng.uniform(0.5, 12.0), 1))))


def _sentences(rng: random.Random, condition: Condition, section: str) -> list[str]:
    test = rng.choice(condition.tests).format(v=_value(rng))
    medication = rng.choice(condition.medications)
    finding = rng.choice(condition.findings)
    plan = rng.choice(condition.plans)
    lead = rng.choice(CONNECTIVES)
    by_section = {
        "History": [
            f"{lead} the patient describes {finding} in the context of known {condition.name}.",
            f"Symptoms have been present for {rng.randint(2, 20)} weeks and limit daily activities.",
            f"Adherence to {medication} is reported as {rng.choice(('good', 'variable', 'poor'))}.",
        ],
        "Examination": [
            f"On examination: {finding}.",
            f"Observations: heart rate {rng.randint(55, 120)}, temperature {round(rng.uniform(36.0, 39.2), 1)} C, "
            f"respiratory rate {rng.randint(12, 28)}.",
        ],
        "Investigations": [
            f"Results: {test}.",
            f"Previous result was {_value(rng)}, so the trend is {rng.choice(('improving', 'stable', 'worse'))}.",
        ],
        "Medications": [
            f"Current medication includes {medication}.",
            f"{rng.choice(condition.medications).capitalize()} was {rng.choice(('started', 'stopped', 'changed'))}"
            f" {rng.randint(1, 12)} months ago.",
        ],
        "Assessment": [
            f"Impression: {condition.name}, {rng.choice(('well controlled', 'suboptimally controlled', 'new'))}.",
            f"The {test} supports this assessment.",
        ],
        "Plan": [f"{plan.capitalize()}.", f"Follow-up in {rng.randint(1, 12)} weeks; {rng.choice(condition.plans)}."],
    }
    return by_section[section]


def clinical_note(rng: random.Random, number: int, size_chars: int) -> str:
    """One synthetic note of about `size_chars` characters, mostly about one condition."""
    main = rng.choice(CONDITIONS)
    record = f"SYN-{rng.randint(100000, 999999)}"
    parts = [f"{rng.choice(NOTE_TYPES)} {number}. Record {record}. Age {rng.randint(18, 95)}."]
    length = len(parts[0])
    while length < size_chars:
        condition = main if rng.random() < 0.75 else rng.choice(CONDITIONS)
        section = rng.choice(SECTIONS)
        paragraph = f"{section}: " + " ".join(_sentences(rng, condition, section))
        parts.append(paragraph)
        length += len(paragraph) + 2
    return "\n\n".join(parts)


def clinical_documents(count: int, *, seed: int = 13, min_chars: int = 8_000, max_chars: int = 40_000) -> list[str]:
    rng = random.Random(seed)
    return [clinical_note(rng, i, rng.randint(min_chars, max_chars)) for i in range(count)]


QUESTION_TEMPLATES = (
    "latest {test} for the patient with {condition}",
    "is {medication} working for {condition}",
    "examination showing {finding}",
    "{condition} follow-up plan: {plan}",
    "side effects after starting {medication}",
    "trend of {test} over the last visits",
    "when was {medication} changed",
    "{finding} in a patient with {condition}",
    "{test} after {medication}",
    "{finding} and {test}",
    "{plan} because of {finding}",
)


def clinical_questions(count: int, *, seed: int = 29) -> list[str]:
    """`count` distinct questions a clinician might type, about the same conditions as the notes."""
    rng = random.Random(seed)
    seen: set[str] = set()
    questions: list[str] = []
    for _ in range(count * 100):
        if len(questions) == count:
            return questions
        condition = rng.choice(CONDITIONS)
        question = rng.choice(QUESTION_TEMPLATES).format(
            test=rng.choice(condition.tests).split(" {v}")[0],
            condition=condition.name,
            medication=rng.choice(condition.medications),
            finding=rng.choice(condition.findings),
            plan=rng.choice(condition.plans),
        )
        if question not in seen:
            seen.add(question)
            questions.append(question)
    raise ValueError(f"could not make {count} distinct questions")
