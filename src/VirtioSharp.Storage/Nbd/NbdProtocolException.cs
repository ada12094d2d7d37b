namespace VirtioSharp.Storage.Nbd;

/// <summary>The server broke a MUST of the NBD protocol: the connection is dropped (a hard disconnect) and re-established.</summary>
internal sealed class NbdProtocolException(string message) : IOException(message);
