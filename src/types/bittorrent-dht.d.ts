// bittorrent-dht is untyped; the project declares the part it uses in storage/dht.
declare module 'bittorrent-dht';
