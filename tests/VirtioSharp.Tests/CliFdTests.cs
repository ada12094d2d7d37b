using System.Buffers.Binary;
using System.IO.Pipes;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using VirtioSharp.Spec;
using VirtioSharp.Tests.Support;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.Tests;

/// <summary>
/// These tests leave descriptors inheritable (no FD_CLOEXEC) while they start a child; run alone so no other test's
/// child picks them up and holds a socket open past the end the test expects.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class InheritedFdCollection
{
    public const string Name = "inherited descriptors";
}

/// <summary>
/// `virtio-sharp vhost-user-blk --fd N` run as a real process with the descriptor inherited the way managers pass it
/// (vhost-user.rst "Backend program conventions"): one end of a connected socket pair, a listening socket (inherited
/// directly, or from systemd-socket-activate), and descriptors that are not Unix stream sockets at all.
/// </summary>
[Collection(InheritedFdCollection.Name)]
public sealed class CliFdTests : IDisposable
{
    // Generous: dotnet starts cold on a loaded two-core machine. Every wait below fails with the CLI's output.
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);
    private const long ImageBytes = 3 << 20;
    private const int Queues = 2;
    private readonly string _dir;
    private readonly string _image;

    public CliFdTests()
    {
        _dir = Directory.CreateTempSubdirectory("vs-clifd-").FullName;
        _image = Path.Combine(_dir, "disk.img");
        using var f = File.Create(_image);
        f.SetLength(ImageBytes);
    }

    public void Dispose() => Directory.Delete(_dir, true);

    private string[] BlkArgs(int fd) =>
        ["vhost-user-blk", "--fd", fd.ToString(), "--blk-file", _image, "--num-queues", Queues.ToString()];

    private static RawClient Client(Socket s) => new(s, (int)Limit.TotalMilliseconds);

    /// <summary>Moves a SafeFd's descriptor into a Socket so the test can poll it.</summary>
    private static Socket AsSocket(SafeFd fd)
    {
        var s = new Socket(new SafeSocketHandle(fd.DangerousGetHandle(), ownsHandle: true));
        fd.SetHandleAsInvalid();
        return s;
    }

    private static Socket ConnectTo(string path)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(path));
        return s;
    }

    /// <summary>Starts the CLI with <paramref name="handle"/> inherited; the parent's inheritable copy is closed at once.</summary>
    private CliProcess StartWithInherited(SafeHandle handle) => StartWithInherited(handle, out _);

    private CliProcess StartWithInherited(SafeHandle handle, out int fd)
    {
        using var inherited = SafeFd.DupInheritable(handle);
        fd = inherited.Fd;
        return CliProcess.Start(BlkArgs(fd));
    }

    /// <summary>Answers only a live back-end serving this image with these options can give.</summary>
    /// <summary>
    /// The shipped blk units for instance <paramref name="instance"/>: the socket's ListenStream (moved from /run into
    /// the test's directory) and the service's ExecStart after `virtio-sharp` (the image path moved the same way,
    /// $VIRTIO_SHARP_ARGS from the per-disk conf set to this test's queue count). Accept=no, as systemd-socket-activate
    /// without --accept: the service inherits the listening socket as fd 3.
    /// </summary>
    private (string Path, string[] Args) ShippedUnit(string instance)
    {
        string dist = Path.Combine(InteropTests.RepoRoot(), "dist", "systemd");
        var socket = Unit(Path.Combine(dist, "virtio-sharp-blk@.socket"), instance);
        var service = Unit(Path.Combine(dist, "virtio-sharp-blk@.service"), instance);
        Assert.Equal("no", socket["Accept"]);
        string listen = socket["ListenStream"];
        Assert.StartsWith("/run/virtio-sharp/", listen);
        var exec = service["ExecStart"].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("/usr/local/bin/virtio-sharp", exec[0]);
        string image = $"/var/lib/virtio-sharp/{instance}.img";
        var args = exec.Skip(1)
            .SelectMany(a => a == "$VIRTIO_SHARP_ARGS" ? ["--num-queues", Queues.ToString()] : new[] { a == image ? _image : a })
            .ToArray();
        Assert.Contains(_image, args);
        Assert.Equal(["--fd", "3"], args.SkipWhile(a => a != "--fd").Take(2));
        return (Path.Combine(_dir, Path.GetFileName(listen)), args);
    }

    /// <summary>A unit file's Key=Value settings (last one wins), with %i expanded.</summary>
    private static Dictionary<string, string> Unit(string file, string instance) =>
        File.ReadLines(file).Where(l => l.Length > 0 && l[0] is not ('#' or '[') && l.Contains('='))
            .Select(l => l.Replace("%i", instance).Split('=', 2))
            .GroupBy(kv => kv[0]).ToDictionary(g => g.Key, g => g.Last()[1]);

    private static void AssertServesImage(RawClient c, CliProcess cli)
    {
        try
        {
            ulong features = c.AskU64(VhostRequest.GetFeatures);
            Assert.True(VirtioFeature.Has(features, VirtioFeature.Version1), $"GET_FEATURES {features:x} lacks VERSION_1");
            Assert.True((features & (1UL << VhostHeader.ProtocolFeaturesBit)) != 0, $"GET_FEATURES {features:x} lacks PROTOCOL_FEATURES");
            ulong protocol = c.AskU64(VhostRequest.GetProtocolFeatures);
            Assert.True((protocol & (1UL << VhostProtocolFeature.Config)) != 0, $"GET_PROTOCOL_FEATURES {protocol:x} lacks CONFIG");
            var ask = new byte[12 + 60];
            BinaryPrimitives.WriteUInt32LittleEndian(ask.AsSpan(4), 60);
            c.Send(VhostRequest.GetConfig, ask);
            var reply = c.Receive() ?? throw new IOException("no reply to GetConfig");
            var config = reply.Body.AsSpan(12);
            Assert.Equal((ulong)ImageBytes / 512, BinaryPrimitives.ReadUInt64LittleEndian(config));
            Assert.Equal(Queues, BinaryPrimitives.ReadUInt16LittleEndian(config[34..]));
        }
        catch (IOException e)
        {
            Assert.Fail($"the back-end did not answer: {e.Message}\n{cli.Output}");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]   // a manager may hand over a non-blocking socket
    public void CliConnectedFdIsServedUntilTheFrontEndHangsUp(bool nonBlocking)
    {
        var (ours, theirs) = SafeFd.SocketPair(LibC.SOCK_STREAM | (nonBlocking ? LibC.SOCK_NONBLOCK : 0));
        // Only the child's end is meant to be non-blocking; the test's own end is read with timeouts.
        if (nonBlocking) InheritedSocket.MakeBlocking(ours.Fd);
        using var client = Client(AsSocket(ours));
        CliProcess cli;
        using (theirs) cli = StartWithInherited(theirs);
        using (cli)
        {
            AssertServesImage(client, cli);
            cli.WaitForOutput("(connected)", Limit);
            // A connected descriptor is one front-end's: when it hangs up, the back-end is done.
            client.Dispose();
            int rc = cli.WaitForExit(Limit);
            Assert.True(rc == 0, $"exit code {rc}, expected 0\n{cli.Output}");
            Assert.Contains("final stats: connections 1 ", cli.StdOut);
        }
    }

    [Theory]
    [InlineData("inherited")]
    [InlineData("systemd-socket-activate")]
    [InlineData("shipped-unit")]   // dist/systemd/virtio-sharp-blk@.socket + .service, run as systemd would
    public void CliListeningFdAcceptsFrontEndsOneAtATime(string manager)
    {
        string path = Path.Combine(_dir, "s");
        string[] args = BlkArgs(3);
        if (manager == "shipped-unit") (path, args) = ShippedUnit("disk");
        Socket? listener = null;
        CliProcess cli;
        if (manager == "inherited")
        {
            listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen(4);
            cli = StartWithInherited(listener.SafeHandle);
        }
        else
        {
            const string activate = "/usr/bin/systemd-socket-activate";
            Assert.True(File.Exists(activate), $"{activate} is missing (package systemd)");
            // It binds PATH, then on the first connection execs the CLI with the listening socket as fd 3.
            cli = CliProcess.Start([activate, "--listen=" + path, "--"], args);
        }
        using (listener)
        using (cli)
        {
            var end = DateTime.UtcNow + Limit;
            while (!File.Exists(path) && !cli.HasExited && DateTime.UtcNow < end) Thread.Sleep(20);
            Assert.True(File.Exists(path), $"{path} was never bound\n{cli.Output}");

            var first = Client(ConnectTo(path));
            try
            {
                AssertServesImage(first, cli);
                cli.WaitForOutput("(listening)", Limit);
                // vhost-user is one-to-one: a second front-end waits in the backlog while the first is connected...
                using var second = Client(ConnectTo(path));
                second.Send(VhostRequest.GetFeatures, ReadOnlySpan<byte>.Empty);
                Assert.False(second.AnswersWithin(TimeSpan.FromMilliseconds(500)), "a second front-end was served while the first was connected");
                // ...and is accepted by the same process once the first hangs up.
                first.Dispose();
                Assert.True(second.AnswersWithin(Limit) && second.Receive() is not null,
                    $"the second front-end was not served after the first hung up\n{cli.Output}");
                AssertServesImage(second, cli);
                cli.WaitForOutput("front-end connected (connection 2)", Limit);
                Assert.False(cli.HasExited, $"the back-end exited\n{cli.Output}");
                // SIGTERM while waiting for the next front-end: an inherited listener cannot be unblocked by closing
                // it, so the server must wait in poll, not in accept, or the signal handler hangs.
                second.Dispose();
                cli.WaitForOutput("waiting for the next front-end", Limit);
                using (var kill = System.Diagnostics.Process.Start("kill", ["-TERM", cli.Id.ToString()])) kill.WaitForExit();
                int rc = cli.WaitForExit(Limit);
                Assert.True(rc == 0, $"exit code {rc} after SIGTERM, expected 0\n{cli.Output}");
                Assert.Contains("final stats: connections 2 ", cli.StdOut);
            }
            finally { first.Dispose(); }
        }
    }

    [Theory]
    [InlineData("pipe", "is not a socket (pipe:[")]
    [InlineData("file", "is not a socket (/")]
    [InlineData("datagram", "is a Unix datagram socket, not a stream socket")]
    [InlineData("tcp", "is a socket of address family 2, not a Unix socket")]
    [InlineData("unconnected", "is a Unix stream socket that is neither connected nor listening")]
    [InlineData("closed", "is not an open descriptor")]
    public void CliFdThatIsNotAUsableUnixStreamSocketIsRefused(string kind, string what)
    {
        // The handle is the test's own copy; StartWithInherited hands the child an inheritable duplicate.
        SafeHandle? handle = kind switch
        {
            "pipe" => PipeEnd(),
            "file" => File.OpenHandle(_image),
            "datagram" => OneEnd(SafeFd.SocketPair(LibC.SOCK_DGRAM)),
            "tcp" => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp).SafeHandle,
            "unconnected" => new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified).SafeHandle,
            _ => null,
        };
        using (handle)
        {
            // Nothing is inherited as 1000 for "closed".
            int fd = 1000;
            using var cli = handle is null ? CliProcess.Start(BlkArgs(fd)) : StartWithInherited(handle, out fd);
            int rc = cli.WaitForExit(Limit);
            Assert.True(rc == 2, $"exit code {rc}, expected 2\n{cli.Output}");
            var err = cli.StdErr.Trim();
            Assert.StartsWith($"error: --fd: fd {fd} {what}", err);
            Assert.Contains("connected or listening Unix stream socket", err);
            if (kind == "file") Assert.Contains(_image, err);
            Assert.DoesNotContain("serving", cli.StdOut);
        }
    }

    private static SafeHandle PipeEnd()
    {
        var pipe = new AnonymousPipeServerStream(PipeDirection.Out);
        pipe.DisposeLocalCopyOfClientHandle();
        return pipe.SafePipeHandle;
    }

    private static SafeFd OneEnd((SafeFd Keep, SafeFd Drop) pair)
    {
        pair.Drop.Dispose();
        return pair.Keep;
    }

    [Fact]
    public void CliFdTogetherWithSocketPathIsRefused()
    {
        string path = Path.Combine(_dir, "s");
        using var cli = CliProcess.Start("vhost-user-blk", "--fd", "0", "--socket-path", path, "--blk-file", _image);
        int rc = cli.WaitForExit(Limit);
        Assert.True(rc == 2, $"exit code {rc}, expected 2\n{cli.Output}");
        Assert.Equal("error: give exactly one of --socket-path PATH or --fd N", cli.StdErr.Trim());
        Assert.False(File.Exists(path), "the socket path was bound anyway");
    }
}
