// The cross-engine smoke suite (suite.mjs) in Firefox ESR, driven through Marionette (driver.mjs).

import { engineSuite } from './suite.mjs';

engineSuite('firefox');
