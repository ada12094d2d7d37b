using Microsoft.Extensions.Logging;

namespace VirtioSharp.Testing;

/// <summary>An <see cref="ILogger"/> that collects lines ("Level: message") so a test can check what a host said.</summary>
public sealed class ListLogger : ILogger
{
    private readonly List<string> _lines = new();
    /// <summary>A snapshot of the lines logged so far (safe from any thread).</summary>
    public IReadOnlyList<string> Lines { get { lock (_lines) return _lines.ToList(); } }
    /// <summary>Scopes are not recorded.</summary>
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    /// <summary>Every level is recorded.</summary>
    public bool IsEnabled(LogLevel logLevel) => true;
    /// <summary>Records one line.</summary>
    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (_lines) _lines.Add($"{logLevel}: {formatter(state, exception)}");
    }
}
