namespace VirtioSharp.Storage.Nbd;

/// <summary>The server answered NBD_ESHUTDOWN: it is going away; the client disconnects softly and retries elsewhere/later.</summary>
internal sealed class NbdShutdownException() : IOException("the server is shutting down");
