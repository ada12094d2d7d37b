namespace VirtioSharp.Storage.Nbd;

/// <summary>
/// Where an <see cref="NbdStorage"/> connects and how it behaves. Build one from a URI with <see cref="Parse"/>
/// (<c>nbd://host[:port]/export</c>, <c>nbd+unix:///export?socket=PATH</c>) and adjust the rest with <c>with</c>.
/// </summary>
public sealed record NbdStorageOptions
{
    /// <summary>TCP host name or address (null for a Unix socket).</summary>
    public string? Host { get; init; }
    /// <summary>TCP port (the IANA NBD port 10809 by default).</summary>
    public int Port { get; init; } = 10809;
    /// <summary>Path of the server's Unix domain socket (null for TCP).</summary>
    public string? UnixSocketPath { get; init; }
    /// <summary>Export name; empty selects the server's default export.</summary>
    public string ExportName { get; init; } = "";
    /// <summary>Open read-only even if the server allows writes.</summary>
    public bool ReadOnly { get; init; }
    /// <summary>Ask for structured replies (NBD_OPT_STRUCTURED_REPLY): sparse reads and error messages.</summary>
    public bool StructuredReplies { get; init; } = true;
    /// <summary>One connection per virtqueue when the server advertises NBD_FLAG_CAN_MULTI_CONN; otherwise queues share one.</summary>
    public bool MultiConn { get; init; }
    /// <summary>Largest read/write payload per NBD command (requests above it, or above the server's maximum, are split).</summary>
    public uint MaxPayload { get; init; } = 1u << 25;
    /// <summary>Bound on one connection attempt (connect and handshake).</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>How long requests wait for a dropped connection to come back before they fail with EIO.</summary>
    public TimeSpan ReconnectTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>A server that sends nothing for this long while requests wait is treated as hung: the connection is re-established.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>First pause between reconnection attempts; it doubles up to <see cref="MaxReconnectDelay"/>.</summary>
    public TimeSpan ReconnectDelay { get; init; } = TimeSpan.FromMilliseconds(100);
    /// <summary>Longest pause between reconnection attempts.</summary>
    public TimeSpan MaxReconnectDelay { get; init; } = TimeSpan.FromSeconds(2);
    /// <summary>How many times one request is re-sent after connections broke under it before it fails with EIO.</summary>
    public int MaxResends { get; init; } = 5;

    /// <summary>The server's address for messages: <c>nbd://host:port/export</c> or <c>nbd+unix:///export?socket=PATH</c>.</summary>
    public string Describe() => NbdUri.Format(this);

    /// <summary>
    /// Options for <paramref name="uri"/>: <c>nbd://host[:port][/export]</c> (IPv6 as <c>[addr]</c>) or
    /// <c>nbd+unix:///[export]?socket=PATH</c>; the export name is percent-decoded.
    /// </summary>
    /// <exception cref="FormatException">The URI is malformed or uses a form this client does not support (TLS).</exception>
    public static NbdStorageOptions Parse(string uri) => NbdUri.Parse(uri);
}
