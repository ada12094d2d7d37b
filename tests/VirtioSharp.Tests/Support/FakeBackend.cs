using System.Buffers.Binary;
using System.Net.Sockets;
using VirtioSharp.Interop;
using VirtioSharp.Spec;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.Tests.Support;

/// <summary>
/// A vhost-user back-end the test scripts, for hostile-back-end tests of the front-end: it listens on a fresh socket,
/// serves one connection on its own thread and answers every request like a plain blk back-end (REPLY_ACK when asked),
/// except where <see cref="Misbehave"/> says otherwise. Every descriptor it receives is closed at once, except the
/// back-end channel and the kick eventfds, which it keeps for the test.
/// </summary>
internal sealed class FakeBackend : IDisposable
{
    private readonly string _dir;
    private readonly Socket _listener;
    private readonly Thread _thread;
    private volatile Socket? _conn;
    private volatile bool _stop;
    private readonly List<VhostRequest> _seen = new();

    /// <summary>What the fake does with one request instead of answering it.</summary>
    public enum Act { Answer, Silence, Close }

    public FakeBackend(ulong protocolFeatures, Func<VhostRequest, Act>? misbehave = null, Func<VhostRequest, byte[]?>? reply = null, bool listen = true)
    {
        ProtocolFeatures = protocolFeatures;
        Misbehave = misbehave ?? (_ => Act.Answer);
        Reply = reply ?? (_ => null);
        _dir = Directory.CreateTempSubdirectory("vs-fake-be-").FullName;
        SocketPath = Path.Combine(_dir, "s");
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(SocketPath));
        _listener.Listen(0);
        _thread = new Thread(Serve) { IsBackground = true, Name = "fake-backend" };
        if (listen) _thread.Start();
    }

    public string SocketPath { get; }
    public ulong Features { get; init; } = VirtioFeature.Bit(VirtioFeature.Version1) | VirtioFeature.Bit(VirtioFeature.AccessPlatform) |
                                           1UL << VhostHeader.ProtocolFeaturesBit | 1UL << VhostHeader.LogAllBit;
    public ulong ProtocolFeatures { get; }
    public Func<VhostRequest, Act> Misbehave { get; }
    /// <summary>A whole raw message (header included) sent instead of the normal reply; null: the normal one.</summary>
    public Func<VhostRequest, byte[]?> Reply { get; }
    /// <summary>The front-end's end of the back-end channel (SET_BACKEND_REQ_FD), once received.</summary>
    public FdSocket? Channel { get; private set; }
    /// <summary>The kick eventfds received, by vring.</summary>
    public Dictionary<int, EventFd> Kicks { get; } = new();
    /// <summary>The call eventfds received, by vring.</summary>
    public Dictionary<int, EventFd> Calls { get; } = new();
    public VhostRequest[] Seen { get { lock (_seen) return [.. _seen]; } }
    /// <summary>Set when the front-end's end of the connection reached EOF (it closed or shut down).</summary>
    public ManualResetEventSlim FrontendGone { get; } = new();

    /// <summary>A reply message: header with REPLY and version 1 plus <paramref name="payload"/>; fields overridable.</summary>
    public static byte[] Message(VhostRequest req, ReadOnlySpan<byte> payload, uint? flags = null, uint? size = null)
    {
        var m = new byte[VhostHeader.Length + payload.Length];
        new VhostHeader((uint)req, flags ?? VhostHeader.Version | VhostHeader.ReplyFlag, size ?? (uint)payload.Length).Write(m);
        payload.CopyTo(m.AsSpan(VhostHeader.Length));
        return m;
    }

    private void Serve()
    {
        try
        {
            while (!_listener.Poll(50_000, SelectMode.SelectRead)) if (_stop) return;
            var c = _listener.Accept();
            _conn = c;
            var s = new FdSocket(c);
            Span<byte> hb = stackalloc byte[VhostHeader.Length];
            var payload = new byte[VhostHeader.MaxPayload];
            var fds = new List<SafeFd>();
            while (true)
            {
                fds.Clear();
                if (!s.ReceiveExact(hb, fds)) break;
                var h = VhostHeader.Parse(hb);
                if (h.Size > 0 && !s.ReceiveExact(payload.AsSpan(0, (int)h.Size), null)) break;
                var req = (VhostRequest)h.Request;
                lock (_seen) _seen.Add(req);
                Keep(req, payload.AsSpan(0, (int)h.Size), fds);
                var act = Misbehave(req);
                if (act == Act.Close) break;
                if (act == Act.Silence) continue;
                var raw = Reply(req);
                if (raw is not null) { s.Send(raw); continue; }
                if (Answer(req, payload.AsSpan(0, (int)h.Size)) is { } body) s.Send(Message(req, body));
                else if (h.NeedReply) s.Send(Message(req, RawClient.U64(0)));
            }
        }
        catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException) { }   // ECONNRESET: closed with our reply unread
        finally
        {
            if (_conn is not null && !_stop) FrontendGone.Set();
            _conn?.Dispose();
        }
    }

    private void Keep(VhostRequest req, ReadOnlySpan<byte> p, List<SafeFd> fds)
    {
        if (req == VhostRequest.SetBackendReqFd && fds.Count == 1) { Channel = new FdSocket(fds[0]); return; }
        if (req == VhostRequest.SetVringKick && fds.Count == 1) { Kicks[(int)(p[0])] = new EventFd(fds[0]); return; }
        if (req == VhostRequest.SetVringCall && fds.Count == 1) { Calls[(int)(p[0])] = new EventFd(fds[0]); return; }
        foreach (var fd in fds) fd.Dispose();
    }

    /// <summary>The payload of the normal reply, or null for a request without one.</summary>
    private byte[]? Answer(VhostRequest req, ReadOnlySpan<byte> p) => req switch
    {
        VhostRequest.GetFeatures => RawClient.U64(Features),
        VhostRequest.GetProtocolFeatures => RawClient.U64(ProtocolFeatures),
        VhostRequest.GetQueueNum => RawClient.U64(1),
        VhostRequest.GetVringBase => RawClient.State(BinaryPrimitives.ReadUInt32LittleEndian(p), 0),
        VhostRequest.SetLogBase => RawClient.U64(0),
        VhostRequest.GetConfig => p.ToArray(),   // offset, size, flags and zeros: a config space of zeros
        _ => null,
    };

    public void Dispose()
    {
        _stop = true;
        try { _conn?.Shutdown(SocketShutdown.Both); } catch (ObjectDisposedException) { }
        if (_thread.IsAlive) _thread.Join(5000);
        _listener.Dispose();
        Channel?.Dispose();
        foreach (var k in Kicks.Values) k.Dispose();
        foreach (var c in Calls.Values) c.Dispose();
        FrontendGone.Dispose();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }
}
