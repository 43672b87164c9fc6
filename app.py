"""actscale's dashboard: ``streamlit run app.py``.

The frame of every page: the pages (`actscale.ui.navigation`), the page configuration and the
sidebar are declared here once; each file in ``app_pages/`` draws one page's content (and runs
on its own too, as the page tests do). The folder is not called ``pages/``: Streamlit treats
a ``pages/`` folder as the legacy multipage app until a session has run ``st.navigation``, so a
fresh server would answer the first deep link (``/Train``) with "Page not found".
"""

import streamlit as st

from actscale.ui import common, deployment, navigation

# Only the pages this deployment serves (`deployment.pages`): a page left out has no URL either.
pages = {
    info: st.Page(info.path, title=info.title, icon=info.icon, default=info is navigation.HOME)
    for info in deployment.pages()
}
page = st.navigation(list(pages.values()))
st.set_page_config(
    page_title="actscale" if page is pages[navigation.HOME] else f"{page.title} · actscale", layout="wide"
)
model_line = common.show_sidebar()
page.run()
# Again after the page, which may have loaded the model (Train, Playground): named on this run.
# (A page that ends with st.stop() keeps the line as it was before it.)
common.show_model_line(model_line)
