using VirtioSharp.Storage.Nbd;

namespace VirtioSharp.Tests.Nbd;

/// <summary>The URI forms <c>--blk-nbd</c> accepts, and clear refusals for the rest.</summary>
public class NbdUriTests
{
    [Theory]
    [InlineData("nbd://example.org/disk", "example.org", 10809, "disk")]
    [InlineData("nbd://example.org:1234/disk", "example.org", 1234, "disk")]
    [InlineData("nbd://127.0.0.1", "127.0.0.1", 10809, "")]
    [InlineData("nbd://127.0.0.1/", "127.0.0.1", 10809, "")]
    [InlineData("nbd://[::1]:10900/a/b", "::1", 10900, "a/b")]
    [InlineData("NBD://host/with%20space%2Fslash", "host", 10809, "with space/slash")]
    public void Nbd_Uri_Tcp(string uri, string host, int port, string export)
    {
        var o = NbdStorageOptions.Parse(uri);
        Assert.Equal(host, o.Host);
        Assert.Equal(port, o.Port);
        Assert.Equal(export, o.ExportName);
        Assert.Null(o.UnixSocketPath);
    }

    [Theory]
    [InlineData("nbd+unix:///disk?socket=/run/nbd.sock", "/run/nbd.sock", "disk")]
    [InlineData("nbd+unix://?socket=/tmp/s", "/tmp/s", "")]
    [InlineData("nbd+unix:///?socket=/tmp/a%20b", "/tmp/a b", "")]
    public void Nbd_Uri_Unix(string uri, string socket, string export)
    {
        var o = NbdStorageOptions.Parse(uri);
        Assert.Equal(socket, o.UnixSocketPath);
        Assert.Equal(export, o.ExportName);
        Assert.Null(o.Host);
        Assert.Equal(uri.StartsWith("nbd+unix:///?", StringComparison.Ordinal) ? $"nbd+unix:///?socket={socket}" : o.Describe(), o.Describe());
    }

    [Theory]
    [InlineData("disk.img", "expected nbd://")]
    [InlineData("http://host/x", "unknown scheme 'http'")]
    [InlineData("nbds://host/x", "needs TLS")]
    [InlineData("nbds+unix:///x?socket=/s", "needs TLS")]
    [InlineData("nbd:///x", "needs a host")]
    [InlineData("nbd://host:/x", "empty port")]
    [InlineData("nbd://host:0/x", "port '0'")]
    [InlineData("nbd://host:65536/x", "port '65536'")]
    [InlineData("nbd://host:12ab/x", "port '12ab'")]
    [InlineData("nbd://[::1/x", "unterminated '['")]
    [InlineData("nbd://user@host/x", "user information")]
    [InlineData("nbd://host/x?socket=/s", "socket= only goes with nbd+unix")]
    [InlineData("nbd://host/x?tls=on", "unknown query parameter 'tls'")]
    [InlineData("nbd://host/%zz", "bad percent-escape in the export name")]
    [InlineData("nbd://host/%00", "contains NUL")]
    [InlineData("nbd://host/x#frag", "fragment")]
    [InlineData("nbd+unix:///x", "needs ?socket=PATH")]
    [InlineData("nbd+unix://host/x?socket=/s", "takes no host")]
    [InlineData("nbd+unix:///x?socket=/a&socket=/b", "given twice")]
    public void Nbd_Uri_Rejected(string uri, string message)
    {
        var e = Assert.Throws<FormatException>(() => NbdStorageOptions.Parse(uri));
        Assert.Contains(message, e.Message);
        Assert.Contains(uri, e.Message);
    }

    [Fact]
    public void Nbd_Uri_LongExportRejected()
    {
        var e = Assert.Throws<FormatException>(() => NbdStorageOptions.Parse("nbd://h/" + new string('x', 4097)));
        Assert.Contains("longer than 4096", e.Message);
    }
}
