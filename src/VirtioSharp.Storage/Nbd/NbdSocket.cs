using System.Net;
using System.Net.Sockets;

namespace VirtioSharp.Storage.Nbd;

/// <summary>
/// Blocking socket I/O with deadlines, for the handshake and a connection's own threads (never a ring's owner thread):
/// receives wait in short slices so a stop request or a deadline is noticed; sends have SO_SNDTIMEO.
/// </summary>
internal static class NbdSocket
{
    /// <summary>Receive waits at most this long per system call, then re-checks deadline and stop flag.</summary>
    public const int SliceMs = 200;

    /// <summary>
    /// Connects in blocking mode (an async connect would leave .NET emulating every later blocking call over its async
    /// engine, which allocates per wait); Linux bounds a blocking connect by SO_SNDTIMEO, set to the connect timeout.
    /// </summary>
    public static Socket Connect(NbdStorageOptions o, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        Socket s;
        EndPoint ep;
        if (o.UnixSocketPath != null)
        {
            s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            ep = new UnixDomainSocketEndPoint(o.UnixSocketPath);
        }
        else
        {
            var host = o.Host ?? throw new ArgumentException("NbdStorageOptions needs Host or UnixSocketPath");
            IPAddress[] addresses = IPAddress.TryParse(host, out var ip) ? [ip] : Dns.GetHostAddresses(host);
            if (addresses.Length == 0) throw new IOException($"'{host}' has no address");
            ip = addresses[0];
            s = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            ep = new IPEndPoint(ip, o.Port);
        }
        try
        {
            s.SendTimeout = Millis(o.ConnectTimeout);
            s.Connect(ep);
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.InProgress or SocketError.WouldBlock or SocketError.TimedOut)
        {
            s.Dispose();
            throw new TimeoutException($"connecting took longer than {o.ConnectTimeout.TotalSeconds:0.#} s");
        }
        catch
        {
            s.Dispose();
            throw;
        }
        s.ReceiveTimeout = SliceMs;
        s.SendTimeout = Millis(o.RequestTimeout);
        return s;
    }

    private static int Millis(TimeSpan t) => (int)Math.Clamp(t.TotalMilliseconds, 100, int.MaxValue);

    /// <summary>Sends all of <paramref name="data"/>; an error or SO_SNDTIMEO expiring throws.</summary>
    public static void SendAll(Socket s, ReadOnlySpan<byte> data)
    {
        while (data.Length > 0)
        {
            int n = s.Send(data, SocketFlags.None, out var err);
            if (err != SocketError.Success) throw new IOException($"send failed: {err}");
            if (n <= 0) throw new IOException("send made no progress");
            data = data[n..];
        }
    }

    /// <summary>
    /// Receives exactly <paramref name="buffer"/>.Length bytes; <paramref name="watch"/> hears of every silent slice
    /// and every arrival, so the caller decides when silence is too long (it throws to stop).
    /// </summary>
    public static void ReceiveAll<TWatch>(Socket s, Span<byte> buffer, ref TWatch watch) where TWatch : struct, IReceiveWatch
    {
        while (buffer.Length > 0)
        {
            int n = s.Receive(buffer, SocketFlags.None, out var err);
            if (err is SocketError.TimedOut or SocketError.WouldBlock or SocketError.Interrupted)
            {
                watch.Idle();
                continue;
            }
            if (err != SocketError.Success) throw new IOException($"receive failed: {err}");
            if (n == 0) throw new EndOfStreamException("the server closed the connection");
            watch.Progress(n);
            buffer = buffer[n..];
        }
    }

    /// <summary>What a receive consults while it waits.</summary>
    public interface IReceiveWatch
    {
        /// <summary>A slice passed without data; throw to give up.</summary>
        void Idle();
        /// <summary><paramref name="bytes"/> arrived.</summary>
        void Progress(int bytes);
    }

    /// <summary>Gives up at a fixed deadline or on cancellation (the handshake).</summary>
    public struct DeadlineWatch(long deadlineMs, CancellationToken ct) : IReceiveWatch
    {
        public readonly void Idle()
        {
            ct.ThrowIfCancellationRequested();
            if (Environment.TickCount64 > deadlineMs) throw new TimeoutException("the server did not answer in time");
        }
        public readonly void Progress(int bytes) => ct.ThrowIfCancellationRequested();
    }
}
