/**
 * The Copilot settings in the user's language, in the Settings Editor too.
 *
 * JupyterLab translates a plugin's settings schema on the server
 * (jupyterlab_server `translator.translate_schema`) with gettext catalogues that
 * it looks for only in the installed *language pack*
 * (`jupyterlab_language_pack_<locale>/locale`), under the domain the schema names
 * in `jupyter.lab.internationalization`. A third-party extension cannot put its
 * catalogue there (the language pack is another package), so the server leaves our
 * schema in English. `jupyterlab-translate` only helps to build language packs.
 *
 * Instead each of our schemas declares `jupyter.lab.transform` and a `fetch`
 * transform translates its titles and descriptions in the browser with our own
 * catalogue (the strings are extracted with the context `schema` by
 * scripts/i18n.mjs, from every schema that declares the transform).
 *
 * A transformed plugin is held back by the registry until someone loads it, so
 * `loadTranslated` loads it right after registering the transform. JupyterLab's
 * toolbars, menus and shortcuts take the items of a plugin loaded after they were
 * built (they listen to `pluginChanged`), so schema/explain.json's cell toolbar
 * button and context-menu entries still appear.
 */

import type { ISettingRegistry } from '@jupyterlab/settingregistry';
import type { TranslationBundle } from '@jupyterlab/translation';
import { JSONExt } from '@lumino/coreutils';

/** The gettext context of schema strings (the one jupyterlab_server uses too). */
export const SCHEMA_CONTEXT = 'schema';

const TRANSLATED_KEYS = ['title', 'description'] as const;

type SchemaNode = { [key: string]: unknown };

function translateNode(node: SchemaNode, trans: TranslationBundle): void {
  for (const key of TRANSLATED_KEYS) {
    const value = node[key];
    if (typeof value === 'string' && value) {
      node[key] = trans._p(SCHEMA_CONTEXT, value);
    }
  }
  const properties = node.properties as { [name: string]: SchemaNode } | undefined;
  for (const property of Object.values(properties ?? {})) {
    translateNode(property, trans);
  }
}

/**
 * A copy of `plugin` whose schema titles and descriptions (root and properties) are
 * translated.
 */
export function translateSchema(
  plugin: ISettingRegistry.IPlugin,
  trans: TranslationBundle
): ISettingRegistry.IPlugin {
  const schema = JSONExt.deepCopy(plugin.schema as any) as SchemaNode;
  translateNode(schema, trans);
  return { ...plugin, schema: schema as ISettingRegistry.ISchema };
}

/**
 * Register the translating transform of our plugin `pluginId` and load its settings.
 */
export function loadTranslated(
  registry: ISettingRegistry,
  pluginId: string,
  trans: TranslationBundle
): Promise<ISettingRegistry.ISettings> {
  registry.transform(pluginId, { fetch: plugin => translateSchema(plugin, trans) });
  return registry.load(pluginId);
}
