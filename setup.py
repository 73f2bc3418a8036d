"""Minimal setuptools shim reading nbdev's settings.ini (so `pip install -e .` works)."""
from configparser import ConfigParser
from pathlib import Path
from setuptools import setup, find_packages

cfg = ConfigParser(delimiters=["="])
cfg.read("settings.ini", encoding="utf-8")
c = cfg["DEFAULT"]
readme = Path("README.md")
setup(
    name=c["lib_name"], version=c["version"], description=c["description"], keywords=c["keywords"].split(),
    long_description=readme.read_text() if readme.exists() else c["description"],
    long_description_content_type="text/markdown",
    author=c["author"], author_email=c["author_email"], license="Apache-2.0", url=c["git_url"],
    classifiers=["Programming Language :: Python :: 3", "License :: OSI Approved :: Apache Software License"],
    python_requires=">=" + c["min_python"],
    packages=find_packages(include=["interpwb", "interpwb.*"]),
    install_requires=c.get("requirements", "").split(),
    extras_require={"dev": c.get("dev_requirements", "").split()},
    entry_points={"nbdev": [f"{c['lib_path']}={c['lib_path']}._modidx:d"]},
    scripts=[],
)
