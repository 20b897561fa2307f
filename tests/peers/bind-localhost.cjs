// Preloaded into reference servers that listen on every interface: make a listen() call without a
// host bind 127.0.0.1 only, so tests never expose a port beyond loopback.
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' && (args.length === 1 || typeof args[1] === 'function')) {
    args.splice(1, 0, '127.0.0.1');
  }
  return listen.apply(this, args);
};
