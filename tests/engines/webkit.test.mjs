// The cross-engine smoke suite (suite.mjs) in WebKitGTK's MiniBrowser, driven through WebKitWebDriver
// under Xvfb (driver.mjs).

import { engineSuite } from './suite.mjs';

engineSuite('webkit');
