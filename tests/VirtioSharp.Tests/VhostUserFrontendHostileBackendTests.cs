using System.Buffers.Binary;
using VirtioSharp.Dma;
using VirtioSharp.Drivers.Block;
using VirtioSharp.Spec;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Frontend;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;
using Act = VirtioSharp.Tests.Support.FakeBackend.Act;

namespace VirtioSharp.Tests;

/// <summary>
/// The front-end against a back-end that stays silent, answers wrongly or goes away (a <see cref="FakeBackend"/> the
/// test scripts): every wait on it is bounded by <see cref="VhostUserFrontendOptions.ReplyTimeout"/>, every reply is
/// checked before it is used, and a refused connect leaves nothing behind.
/// </summary>
public class VhostUserFrontendHostileBackendTests
{
    internal const ulong AllProtocolFeatures = 1UL << VhostProtocolFeature.Mq | 1UL << VhostProtocolFeature.ReplyAck | 1UL << VhostProtocolFeature.Config |
                                               1UL << VhostProtocolFeature.LogShmfd | 1UL << VhostProtocolFeature.BackendReq;
    private static readonly TimeSpan Short = TimeSpan.FromMilliseconds(300);
    // Far above Short, so only a wait that is not bounded reaches it (the machine is shared and slow).
    private static readonly TimeSpan Hang = TimeSpan.FromSeconds(30);

    internal static VhostUserFrontendOptions Options(bool iommu = false, bool dirtyLog = false, ulong window = 0) => new()
    {
        MemorySize = 4 << 20,
        ReplyTimeout = Short,
        Iommu = iommu ? InvalidationMode.Strict : null,
        DirtyLog = dirtyLog,
        SharedWindowSize = window,
    };

    /// <summary>Runs <paramref name="f"/> on another thread; fails the test if it is still running after <see cref="Hang"/>.</summary>
    internal static Exception? Within(Action f)
    {
        var t = Task.Run(f);
        Assert.True(t.ContinueWith(_ => { }).Wait(Hang), "the front-end is still waiting for the back-end: a wait without a bound");
        return t.Exception?.InnerException;
    }

    [Theory]
    [InlineData("GetFeatures", false, false)]
    [InlineData("GetProtocolFeatures", false, false)]
    [InlineData("GetQueueNum", false, false)]
    [InlineData("SetBackendReqFd", true, false)]
    [InlineData("SetMemTable", false, false)]            // REPLY_ACK of a request without a reply of its own
    [InlineData("SetLogBase", false, true)]
    public void ABackEndThatNeverAnswersFailsTheConnectNamingTheRequest(string request, bool iommu, bool dirtyLog)
    {
        var silentOn = Enum.Parse<VhostRequest>(request);
        using var be = new FakeBackend(AllProtocolFeatures, r => r == silentOn ? Act.Silence : Act.Answer);
        var e = Within(() => VhostUserFrontend.Connect(be.SocketPath, DeviceId.Block, Options(iommu, dirtyLog)).Dispose());
        var p = Assert.IsType<VhostProtocolException>(e);
        Assert.Contains($"did not answer {silentOn} within 300 ms", p.Message);
        Assert.Contains("ReplyTimeout", p.Message);
        // vhost-user.rst: a front-end that gets no proper reply closes the connection; the back-end sees it end.
        Assert.True(be.FrontendGone.Wait(Hang));
    }

    [Fact]
    public void ARequestAfterTheConnectThatGetsNoReplyFailsAndTheConnectionStaysClosed()
    {
        using var be = new FakeBackend(AllProtocolFeatures, r => r == VhostRequest.GetConfig ? Act.Silence : Act.Answer);
        using var fe = VhostUserFrontend.Connect(be.SocketPath, DeviceId.Block, Options());
        var e = Within(() => fe.ReadConfig(0, new byte[8]));
        Assert.Contains("did not answer GetConfig", Assert.IsType<VhostProtocolException>(e).Message);
        // A late reply could be taken for the next request's: the connection is not used again.
        var again = Within(() => fe.GetFeatures());
        Assert.Contains("unusable since the back-end did not answer GetConfig", Assert.IsType<VhostProtocolException>(again).Message);
        Assert.True(be.FrontendGone.Wait(Hang));
    }

    [Fact]
    public void ABackEndThatClosesFailsTheRequestInsteadOfHanging()
    {
        using var be = new FakeBackend(AllProtocolFeatures, r => r == VhostRequest.GetProtocolFeatures ? Act.Close : Act.Answer);
        var e = Within(() => VhostUserFrontend.Connect(be.SocketPath, DeviceId.Block, Options()).Dispose());
        Assert.Contains("closed the connection instead of answering GetProtocolFeatures", Assert.IsType<VhostProtocolException>(e).Message);
    }

    [Fact]
    public void ABackEndThatNeverAcceptsFailsTheConnectWithinTheTimeout()
    {
        // Listening, never accepting: the backlog (0: one pending connection) fills, then connect(2) would wait.
        using var be = new FakeBackend(AllProtocolFeatures, listen: false);
        using var first = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        using var second = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        first.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(be.SocketPath));
        second.Blocking = false;
        try { second.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(be.SocketPath)); } catch (System.Net.Sockets.SocketException) { }
        var e = Within(() => VhostUserFrontend.Connect(be.SocketPath, DeviceId.Block, Options()).Dispose());
        Assert.Contains("did not accept the connection", Assert.IsType<TimeoutException>(e).Message);
    }

    // Replies that must be refused: each names the request, flags or size it got.
    public static TheoryData<string, byte[], string> BadReplies => new()
    {
        { "another request's code", FakeBackend.Message(VhostRequest.GetProtocolFeatures, RawClient.U64(1)), "answered GetFeatures with request 15" },
        { "no REPLY flag", FakeBackend.Message(VhostRequest.GetFeatures, RawClient.U64(1), flags: VhostHeader.Version), "flags 0x1" },
        { "version 2", FakeBackend.Message(VhostRequest.GetFeatures, RawClient.U64(1), flags: 2 | VhostHeader.ReplyFlag), "flags 0x6" },
        { "NEED_REPLY in a reply", FakeBackend.Message(VhostRequest.GetFeatures, RawClient.U64(1), flags: VhostHeader.Version | VhostHeader.ReplyFlag | VhostHeader.NeedReplyFlag), "flags 0xd" },
        { "a u64 with a 9th byte", FakeBackend.Message(VhostRequest.GetFeatures, new byte[9]), "has 9 payload bytes, expected 8" },
        { "a short u64", FakeBackend.Message(VhostRequest.GetFeatures, new byte[4]), "has 4 payload bytes, expected 8" },
        { "an empty reply", FakeBackend.Message(VhostRequest.GetFeatures, []), "has 0 payload bytes, expected 8" },
        { "a size beyond any message", FakeBackend.Message(VhostRequest.GetFeatures, [], size: uint.MaxValue), "has 4294967295 payload bytes" },
    };

    [Theory]
    [MemberData(nameof(BadReplies))]
    public void AMalformedReplyIsRefusedAndEndsTheConnection(string what, byte[] reply, string reason)
    {
        using var be = new FakeBackend(AllProtocolFeatures, reply: r => r == VhostRequest.GetFeatures ? reply : null);
        var e = Within(() => VhostUserFrontend.Connect(be.SocketPath, DeviceId.Block, Options()).Dispose());
        Assert.True(e is VhostProtocolException, $"{what}: {e}");
        Assert.Contains(reason, e!.Message);
        Assert.True(be.FrontendGone.Wait(Hang));
    }

    /// <summary>
    /// vhost-user.rst "Communication": with LOG_SHMFD the back-end answers SET_LOG_BASE. DPDK sends no payload,
    /// libvhost-user 8 bytes holding the log size, this project's back-end a u64 0: each is accepted. Any other size, or
    /// a reply to something else, is refused.
    /// </summary>
    [Theory]
    [InlineData(0, 0u, true, "")]
    [InlineData(8, 0u, true, "")]
    [InlineData(8, 4096u, true, "")]
    [InlineData(16, 0u, false, "has 16 payload bytes, expected 8 or 0")]
    [InlineData(4, 0u, false, "has 4 payload bytes, expected 8 or 0")]
    [InlineData(8, 0u, false, "answered SetLogBase with request 2")]
    public void TheSetLogBaseReplyIsValidated(int size, uint value, bool accepted, string reason)
    {
        var body = new byte[size];
        if (size >= 4) BinaryPrimitives.WriteUInt32LittleEndian(body, value);
        var reply = FakeBackend.Message(reason.Contains("request 2") ? VhostRequest.SetFeatures : VhostRequest.SetLogBase, body);
        using var be = new FakeBackend(AllProtocolFeatures, reply: r => r == VhostRequest.SetLogBase ? reply : null);
        VhostUserFrontend? fe = null;
        var e = Within(() => fe = VhostUserFrontend.Connect(be.SocketPath, DeviceId.Block, Options(dirtyLog: true)));
        using (fe)
        {
            if (accepted)
            {
                Assert.Null(e);
                Assert.True(fe!.DirtyLogging);
                // The exchange after it still lines up: a stray byte left in the stream would break this reply.
                Assert.NotEqual(0UL, fe.GetFeatures());
            }
            else Assert.Contains(reason, Assert.IsType<VhostProtocolException>(e).Message);
        }
    }

    [Fact]
    public void AGetVringBaseReplyForAnotherVringIsRefused()
    {
        using var be = new FakeBackend(AllProtocolFeatures, reply: r => r == VhostRequest.GetVringBase ? FakeBackend.Message(r, RawClient.State(7, 0)) : null);
        using var fe = VhostUserFrontend.Connect(be.SocketPath, DeviceId.Block, Options());
        BlkDriver.Probe(fe, fe.Environment());   // not disposed: its removal would meet the same reply
        var e = Within(() => fe.DeleteQueue(0));
        Assert.Contains("answered for vring 7", Assert.IsType<VhostProtocolException>(e).Message);
    }

    /// <summary>
    /// The back-end holds the kick eventfd too: filling its counter (0xfffffffffffffffe) would make a blocking write
    /// wait until the back-end reads. The front-end's kick never waits; the pending count already says "kicked".
    /// </summary>
    [Fact]
    public void ABackEndThatFillsTheKickCounterCannotStallNotify()
    {
        using var be = new FakeBackend(AllProtocolFeatures);
        using var fe = VhostUserFrontend.Connect(be.SocketPath, DeviceId.Block, Options());
        using var drv = BlkDriver.Probe(fe, fe.Environment());
        var kick = be.Kicks[0];
        unsafe
        {
            ulong max = ulong.MaxValue - 1;
            Assert.Equal(8, (int)VirtioSharp.Interop.LibC.Write(kick.Handle.Fd, &max, 8));
        }
        Assert.Null(Within(() => fe.Notify(0)));
        Assert.Equal(ulong.MaxValue - 1, kick.Drain());
    }

    /// <summary>
    /// The back-end holds the call eventfd's open file too and may clear O_NONBLOCK on it: reading the (empty) counter
    /// for an interrupt must still not wait for the back-end's next call.
    /// </summary>
    [Fact]
    public void ABackEndThatMakesTheCallFdBlockingCannotStallTheInterruptRead()
    {
        using var be = new FakeBackend(AllProtocolFeatures);
        using var fe = VhostUserFrontend.Connect(be.SocketPath, DeviceId.Block, Options());
        using var drv = BlkDriver.Probe(fe, fe.Environment());
        var call = be.Calls[0];
        int flags = VirtioSharp.Interop.LibC.Fcntl(call.Handle.Fd, VirtioSharp.Interop.LibC.F_GETFL, 0);
        Assert.NotEqual(0, flags & VirtioSharp.Interop.LibC.O_NONBLOCK);   // the front-end made it non-blocking
        Assert.Equal(0, VirtioSharp.Interop.LibC.Fcntl(call.Handle.Fd, VirtioSharp.Interop.LibC.F_SETFL, flags & ~VirtioSharp.Interop.LibC.O_NONBLOCK));
        uint isr = 1;
        Assert.Null(Within(() => isr = fe.ReadAndAckInterrupt()));
        Assert.Equal(0u, isr);
        call.Signal();
        Assert.Equal(1u, fe.ReadAndAckInterrupt());
    }
}
