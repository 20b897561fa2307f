// Preloaded into reference servers that listen on every interface: make a listen() call without a
// host bind 127.0.0.1 only, so tests never expose a port beyond loopback. The port may be a number
// or, as servers pass process.env.PORT straight through, a string of digits.
const net = require('net');
const listen = net.Server.prototype.listen;
const isPort = (p) => typeof p === 'number' || (typeof p === 'string' && /^\d+$/.test(p));
net.Server.prototype.listen = function (...args) {
  if (isPort(args[0]) && (args.length === 1 || typeof args[1] === 'function')) {
    args.splice(1, 0, '127.0.0.1');
  }
  return listen.apply(this, args);
};
