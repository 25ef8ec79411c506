"""The core never imports Streamlit, and Gradio only inside mmlab/demo/ (STYLE.md)."""
import subprocess
import sys

CODE = """
import importlib, pkgutil, sys
import mmlab
names = [m.name for m in pkgutil.walk_packages(mmlab.__path__, "mmlab.")
         if not (m.name.startswith("mmlab.demo.") )]
for name in names:
    importlib.import_module(name)
print(len(names), "streamlit" in sys.modules, "gradio" in sys.modules)
"""


def test_core_modules_load_neither_streamlit_nor_gradio():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    count, streamlit, gradio = out.stdout.split()
    assert int(count) > 30  # every core module was imported
    assert streamlit == "False" and gradio == "False"
