"""notebooks/quickstart.ipynb: committed without outputs, and run top to bottom in a kernel
(no dataset, no network), its printed predictions equal to `main.py --mode=predict`'s on the
same files. The executed notebook is written as HTML for a reader to look at:
$FLAX_CIFAR_NOTEBOOK_HTML, else build/notebook/quickstart.html (not committed)."""
import glob
import os
import subprocess
import sys

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, 'notebooks', 'quickstart.ipynb')
SAMPLES = sorted(glob.glob(os.path.join('pretrained', 'samples', '*.jpg'), root_dir=ROOT))


def cell_text(cell) -> str:
    return ''.join(output.get('text', '') for output in cell.outputs
                   if output.output_type == 'stream' and output.name == 'stdout')


def test_the_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == 'code']
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)
    assert len(SAMPLES) == 20  # the images it predicts on, shipped beside the model


@pytest.mark.slow
def test_the_notebook_runs_and_predicts_what_main_py_predicts():
    import nbclient
    from nbconvert import HTMLExporter

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name='python3',
                            resources={'metadata': {'path': os.path.dirname(NOTEBOOK)}}
                            ).execute()  # raises on the first cell that fails
    html = os.environ.get('FLAX_CIFAR_NOTEBOOK_HTML',
                          os.path.join(ROOT, 'build', 'notebook', 'quickstart.html'))
    os.makedirs(os.path.dirname(html), exist_ok=True)
    with open(html, 'w') as f:
        f.write(HTMLExporter().from_notebook_node(notebook)[0])

    code = [cell for cell in notebook.cells if cell.cell_type == 'code']
    predicted = cell_text(code[1]).splitlines()
    command = [sys.executable, 'main.py', '--mode=predict', '--workdir', 'pretrained/default',
               *SAMPLES]
    expected = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    assert predicted == expected.stdout.splitlines()
    assert len(predicted) == 20
    figures = [output for cell in code for output in cell.outputs
               if 'image/png' in output.get('data', {})]
    assert len(figures) == 4  # the samples, the confusion matrix, the two runs' curves
    summary = cell_text(code[3])
    assert '192,544' in summary and 'receptive' in summary.lower()
    assert 'the two agree on' in cell_text(code[6])
    own_run = cell_text(code[7]) + ''.join(o.get('text', '') for o in code[7].outputs)
    assert 'Test set: Average loss' in own_run
