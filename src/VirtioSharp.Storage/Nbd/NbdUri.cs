using System.Globalization;
using System.Text;

namespace VirtioSharp.Storage.Nbd;

/// <summary>
/// The NBD URI forms of the NBD project's doc/uri.md that this client supports: <c>nbd://</c> (TCP) and
/// <c>nbd+unix://</c> (Unix socket, <c>?socket=</c>). TLS forms (<c>nbds</c>) are refused by name.
/// </summary>
internal static class NbdUri
{
    public static NbdStorageOptions Parse(string uri)
    {
        ArgumentNullException.ThrowIfNull(uri);
        int colon = uri.IndexOf("://", StringComparison.Ordinal);
        if (colon <= 0) throw Bad(uri, "expected nbd://host[:port]/export or nbd+unix:///export?socket=PATH");
        string scheme = uri[..colon].ToLowerInvariant();
        string rest = uri[(colon + 3)..];
        if (scheme is "nbds" or "nbds+unix" or "nbds+vsock")
            throw Bad(uri, $"scheme '{scheme}' needs TLS, which this client does not support");
        if (scheme is not ("nbd" or "nbd+unix"))
            throw Bad(uri, $"unknown scheme '{scheme}' (expected nbd or nbd+unix)");

        if (rest.IndexOf('#') >= 0) throw Bad(uri, "a fragment (#…) is not allowed");
        string query = "";
        int q = rest.IndexOf('?');
        if (q >= 0) { query = rest[(q + 1)..]; rest = rest[..q]; }
        int slash = rest.IndexOf('/');
        string authority = slash < 0 ? rest : rest[..slash];
        string path = slash < 0 ? "" : rest[(slash + 1)..];
        string export = Decode(uri, path, "export name");
        // Strings MUST NOT contain NUL and MUST be no longer than 4096 bytes (proto.md "Conventions").
        if (export.Contains('\0')) throw Bad(uri, "the export name contains NUL");
        if (Encoding.UTF8.GetByteCount(export) > NbdProtocol.MaxString) throw Bad(uri, "the export name is longer than 4096 bytes");

        string? socket = null;
        foreach (var pair in query.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            int eq = pair.IndexOf('=');
            string key = eq < 0 ? pair : pair[..eq];
            string value = eq < 0 ? "" : Decode(uri, pair[(eq + 1)..], key);
            if (key == "socket")
            {
                if (socket != null) throw Bad(uri, "socket= given twice");
                socket = value;
            }
            else throw Bad(uri, $"unknown query parameter '{key}' (only socket= is understood)");
        }

        if (scheme == "nbd+unix")
        {
            if (authority.Length > 0) throw Bad(uri, "nbd+unix takes no host: write nbd+unix:///export?socket=PATH");
            if (string.IsNullOrEmpty(socket)) throw Bad(uri, "nbd+unix needs ?socket=PATH");
            return new NbdStorageOptions { UnixSocketPath = socket, ExportName = export };
        }

        if (socket != null) throw Bad(uri, "socket= only goes with nbd+unix://");
        var (host, port) = SplitHostPort(uri, authority);
        return new NbdStorageOptions { Host = host, Port = port, ExportName = export };
    }

    public static string Format(NbdStorageOptions o)
    {
        string export = Uri.EscapeDataString(o.ExportName);
        if (o.UnixSocketPath != null) return $"nbd+unix:///{export}?socket={o.UnixSocketPath}";
        string host = o.Host != null && o.Host.Contains(':') ? $"[{o.Host}]" : o.Host ?? "";
        return $"nbd://{host}:{o.Port}/{export}";
    }

    private static (string, int) SplitHostPort(string uri, string authority)
    {
        if (authority.Contains('@')) throw Bad(uri, "user information (user@) is not supported");
        string host, portText = "";
        if (authority.StartsWith('['))
        {
            int close = authority.IndexOf(']');
            if (close < 0) throw Bad(uri, "unterminated '[' in an IPv6 address");
            host = authority[1..close];
            string after = authority[(close + 1)..];
            if (after.Length > 0)
            {
                if (after[0] != ':') throw Bad(uri, "expected ':port' after the IPv6 address");
                portText = after[1..];
                if (portText.Length == 0) throw Bad(uri, "empty port");
            }
        }
        else
        {
            int c = authority.IndexOf(':');
            host = c < 0 ? authority : authority[..c];
            if (c >= 0)
            {
                portText = authority[(c + 1)..];
                if (portText.Length == 0) throw Bad(uri, "empty port");
            }
        }
        if (host.Length == 0) throw Bad(uri, "nbd:// needs a host (for a Unix socket use nbd+unix:///export?socket=PATH)");
        int port = NbdProtocol.DefaultPort;
        if (portText.Length > 0 &&
            (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out port) || port is < 1 or > 65535))
            throw Bad(uri, $"port '{portText}' is not a number from 1 to 65535");
        return (host, port);
    }

    private static string Decode(string uri, string s, string what)
    {
        if (s.IndexOf('%') < 0) return s;
        var bytes = new List<byte>(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] != '%') { bytes.AddRange(Encoding.UTF8.GetBytes(s[i].ToString())); continue; }
            if (i + 2 >= s.Length || !byte.TryParse(s.AsSpan(i + 1, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out byte b))
                throw Bad(uri, $"bad percent-escape in the {what}");
            bytes.Add(b);
            i += 2;
        }
        try { return new UTF8Encoding(false, true).GetString(bytes.ToArray()); }
        catch (DecoderFallbackException) { throw Bad(uri, $"the {what} is not valid UTF-8"); }
    }

    private static FormatException Bad(string uri, string why) => new($"bad NBD URI '{uri}': {why}");
}
