"""Test builders: a tiny O*NET release, a tiny random BERT with a character-level tokenizer, and
the training config composed for them."""

from __future__ import annotations

import csv
import string
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

from occlass.data.soc import SOC_FILE, SOC_FOLDER

ROOT = Path(__file__).resolve().parents[2]
ONET_DATA = ROOT / "data" / "onet-29.3"

# 12 occupations in 4 major groups, with a few alternate and reported titles each.
OCCUPATIONS = [
    ("11-1011.00", "Chief Executives", "Plan and direct companies.",
     ["CEO", "Company President", "Managing Director"], ["Chief Executive Officer"]),
    ("11-1021.00", "General and Operations Managers", "Plan and direct operations.",
     ["Operations Manager", "General Manager", "Plant Manager"], ["Operations Director"]),
    ("11-3031.01", "Treasurers and Controllers", "Direct financial activities.",
     ["Controller", "Treasurer", "Comptroller"], ["Finance Controller"]),
    ("15-1252.00", "Software Developers", "Design and develop software.",
     ["Software Engineer", "Programmer", "Application Developer"], ["Python Developer"]),
    ("15-1211.00", "Computer Systems Analysts", "Analyze computer systems.",
     ["Systems Analyst", "IT Analyst", "Business Systems Analyst"], ["Systems Consultant"]),
    ("15-2041.00", "Statisticians", "Apply statistical methods.",
     ["Statistician", "Biostatistician", "Data Statistician"], ["Applied Statistician"]),
    ("29-1141.00", "Registered Nurses", "Assess patients and give care.",
     ["Nurse", "Staff Nurse", "Charge Nurse"], ["RN"]),
    ("29-1229.00", "Physicians, All Other", "Diagnose and treat patients.",
     ["Doctor", "Physician", "Medical Doctor"], ["Hospitalist"]),
    ("29-2061.00", "Licensed Practical Nurses", "Care for the sick.",
     ["Practical Nurse", "LPN", "Vocational Nurse"], ["Licensed Nurse"]),
    ("47-2111.00", "Electricians", "Install and repair wiring.",
     ["Electrician", "Wireman", "Journeyman Electrician"], ["Industrial Electrician"]),
    ("47-2152.00", "Plumbers", "Install pipes and fixtures.",
     ["Plumber", "Pipe Fitter", "Master Plumber"], ["Service Plumber"]),
    ("47-2031.00", "Carpenters", "Build wooden structures.",
     ["Carpenter", "Framer", "Joiner"], ["Finish Carpenter"]),
]

# The 2018 SOC groups of those occupations (as in BLS's structure: code, level, title).
SOC_ROWS = [
    ("11-0000", "major", "Management Occupations"),
    ("11-1000", "minor", "Top Executives"),
    ("11-1010", "broad", "Chief Executives"),
    ("11-1011", "detailed", "Chief Executives"),
    ("11-1020", "broad", "General and Operations Managers"),
    ("11-1021", "detailed", "General and Operations Managers"),
    ("11-3000", "minor", "Operations Specialties Managers"),
    ("11-3030", "broad", "Financial Managers"),
    ("11-3031", "detailed", "Financial Managers"),
    ("15-0000", "major", "Computer and Mathematical Occupations"),
    ("15-1200", "minor", "Computer Occupations"),
    ("15-1210", "broad", "Computer and Information Analysts"),
    ("15-1211", "detailed", "Computer Systems Analysts"),
    ("15-1250", "broad", "Software and Web Developers, Programmers, and Testers"),
    ("15-1252", "detailed", "Software Developers"),
    ("15-2000", "minor", "Mathematical Science Occupations"),
    ("15-2040", "broad", "Statisticians"),
    ("15-2041", "detailed", "Statisticians"),
    ("29-0000", "major", "Healthcare Practitioners and Technical Occupations"),
    ("29-1000", "minor", "Healthcare Diagnosing or Treating Practitioners"),
    ("29-1140", "broad", "Registered Nurses"),
    ("29-1141", "detailed", "Registered Nurses"),
    ("29-1210", "broad", "Physicians"),
    ("29-1229", "detailed", "Physicians, All Other"),
    ("29-2000", "minor", "Health Technologists and Technicians"),
    ("29-2060", "broad", "Licensed Practical and Licensed Vocational Nurses"),
    ("29-2061", "detailed", "Licensed Practical and Licensed Vocational Nurses"),
    ("47-0000", "major", "Construction and Extraction Occupations"),
    ("47-2000", "minor", "Construction Trades Workers"),
    ("47-2030", "broad", "Carpenters"),
    ("47-2031", "detailed", "Carpenters"),
    ("47-2110", "broad", "Electricians"),
    ("47-2111", "detailed", "Electricians"),
    ("47-2150", "broad", "Pipelayers, Plumbers, Pipefitters, and Steamfitters"),
    ("47-2152", "detailed", "Plumbers, Pipefitters, and Steamfitters"),
]


def write_tiny_onet(folder: Path) -> Path:
    """A release folder in the official text layout (tab-delimited, one header row), with the
    SOC 2018 structure of its occupations beside it (`soc-2018/`, as `make data` writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    row = "\t".join
    occupation = [row(["O*NET-SOC Code", "Title", "Description"])]
    alternate = [row(["O*NET-SOC Code", "Title", "Alternate Title", "Short Title", "Source(s)"])]
    reported = [row(["O*NET-SOC Code", "Title", "Reported Job Title", "Shown in My Next Move"])]
    tasks = [row(["O*NET-SOC Code", "Title", "Task ID", "Task", "Task Type",
                  "Incumbents Responding", "Date", "Domain Source"])]
    for n, (code, title, description, alts, reps) in enumerate(OCCUPATIONS):
        occupation.append(row([code, title, description]))
        alternate += [row([code, title, a, a.split()[0] if i == 0 else "", "08"])
                      for i, a in enumerate(alts)]
        reported += [row([code, title, r, "Y"]) for r in reps]
        tasks += [row([code, title, str(100 * n + 1), f"Supplemental task of {title}.",
                       "Supplemental", "50", "08/2023", "Incumbent"]),
                  row([code, title, str(100 * n + 2), f"Core task of {title}.", "Core", "90",
                       "08/2023", "Incumbent"])]
    alternate.append("15-1252.00\tSoftware Developers\tDeveloper\t\t08")  # multi-code title
    alternate.append("15-1211.00\tComputer Systems Analysts\tDeveloper\t\t08")
    files = {"Occupation Data.txt": occupation, "Alternate Titles.txt": alternate,
             "Sample of Reported Titles.txt": reported, "Task Statements.txt": tasks}
    for name, lines in files.items():
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "Read Me.txt").write_text("O*NET 29.3 Database\nMay 2025 Release\n")
    soc = folder.parent / SOC_FOLDER
    soc.mkdir(exist_ok=True)
    with (soc / SOC_FILE).open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("code", "level", "title"), *SOC_ROWS])
    return folder


def make_tiny_bert(folder: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with a character-level WordPiece vocab."""
    chars = string.ascii_lowercase + string.digits
    vocab = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(chars)
             + [f"##{c}" for c in chars] + list(string.punctuation))
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)},
                                  do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=256,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def compose_tiny_train(data_dir: Path, model_dir: Path, output_dir: Path, *overrides: str):
    """conf/train.yaml for the tiny model and data, writing its run to `output_dir` (no logger
    unless an override names one)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=[
            f"paths.data_dir={data_dir}", f"paths.output_dir={output_dir}",
            f"model.encoder.name={model_dir}", "trainer.precision=32-true",
            "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
            "data.batch_size=8", "data.eval_batch_size=16", "data.val_fraction=0.2",
            "data.test_fraction=0.2", "callbacks=none", *overrides,
            *([] if any(o.startswith("logger=") for o in overrides) else ["~logger"])])
