// ragd page script: plain JavaScript, no framework, nothing fetched from outside the server.
"use strict";
